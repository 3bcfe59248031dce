/**
 * The built-in demo model `mix2api-demo`: a small deterministic OpenAI-compatible upstream
 * started by `mix2api start` when no upstream is configured, so a new user sees complete runs
 * (and tool chains) offline. It is not a language model: it echoes, and calls a tool whose
 * name the user mentions.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

interface Msg {
  role: string;
  content?: unknown;
  tool_calls?: unknown[];
}
interface Tool {
  type: string;
  function?: { name: string; parameters?: { properties?: Record<string, { type?: string }>; required?: string[] } };
}

const text = (c: unknown): string =>
  typeof c === 'string' ? c : Array.isArray(c) ? c.map((p: { text?: string }) => p.text ?? '').join(' ') : '';

/** Arguments from the user's words: quoted text for strings, numbers in order for numbers. */
function argsFor(tool: Tool, said: string): string {
  const props = tool.function?.parameters?.properties ?? {};
  const quoted = /["“']([^"”']+)["”']/.exec(said)?.[1] ?? said.slice(0, 60);
  const numbers = (said.match(/-?\d+(\.\d+)?/g) ?? []).map(Number);
  const out: Record<string, unknown> = {};
  for (const [k, p] of Object.entries(props)) {
    if (p.type === 'number' || p.type === 'integer') out[k] = numbers.shift() ?? 1;
    else if (p.type === 'string') out[k] = k === 'path' ? '.' : quoted;
    else if (p.type === 'boolean') out[k] = false;
  }
  return JSON.stringify(out);
}

export function demoReply(body: { messages?: Msg[]; tools?: Tool[] }): { content?: string; toolCalls?: Array<{ name: string; arguments: string }> } {
  const messages = body.messages ?? [];
  const last = messages[messages.length - 1];
  if (last?.role === 'tool') {
    const results = [];
    for (let i = messages.length - 1; i >= 0 && messages[i]!.role === 'tool'; i--) results.unshift(text(messages[i]!.content));
    return { content: `The tools answered:\n${results.map((r) => `- ${r.slice(0, 400)}`).join('\n')}\nThat is all from the demo model.` };
  }
  const said = text([...messages].reverse().find((m) => m.role === 'user')?.content);
  const lower = said.toLowerCase();
  const wanted = (body.tools ?? []).filter((t) => {
    const name = t.function?.name ?? '';
    const short = name.split('__').pop() ?? name;
    return short.length > 2 && lower.includes(short.toLowerCase().replace(/[_-]/g, ' ')) || lower.includes(short.toLowerCase());
  });
  if (wanted.length > 0) return { toolCalls: wanted.slice(0, 3).map((t) => ({ name: t.function!.name, arguments: argsFor(t, said) })) };
  const tools = (body.tools ?? []).map((t) => t.function?.name).filter(Boolean);
  return {
    content:
      `Hello from mix2api-demo, the built-in demo model (not a real LLM). You said: "${said.slice(0, 200)}". ` +
      (tools.length > 0 ? `Mention a tool by name to see a tool chain, e.g. "use echo to say 'hi'". Tools: ${tools.slice(0, 8).join(', ')}.` : 'Configure an upstream to talk to a real model.'),
  };
}

function sse(res: http.ServerResponse, obj: unknown): void {
  res.write(`data: ${JSON.stringify(obj)}\n\n`);
}

export async function startDemoUpstream(port = 0, delayMs = 15): Promise<{ url: string; close(): Promise<void> }> {
  let n = 0;
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      void (async () => {
        if (req.method === 'GET' && req.url?.endsWith('/models')) {
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ object: 'list', data: [{ id: 'mix2api-demo', object: 'model', created: 0, owned_by: 'mix2api' }] }));
          return;
        }
        let body: { messages?: Msg[]; tools?: Tool[]; model?: string };
        try {
          body = JSON.parse(raw || '{}') as typeof body;
        } catch {
          res.writeHead(400, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { message: 'invalid JSON', type: 'invalid_request_error', param: null, code: null } }));
          return;
        }
        const reply = demoReply(body);
        const id = `chatcmpl-demo${++n}`;
        const base = { id, object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model: body.model ?? 'mix2api-demo' };
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        sse(res, { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
        const words = reply.content?.match(/\s*\S+\s*/g) ?? [];
        for (const w of words) {
          await new Promise((r) => setTimeout(r, delayMs));
          sse(res, { ...base, choices: [{ index: 0, delta: { content: w }, finish_reason: null }] });
        }
        (reply.toolCalls ?? []).forEach((c, index) =>
          sse(res, { ...base, choices: [{ index: 0, delta: { tool_calls: [{ index, id: `call_demo${n}_${index}`, type: 'function', function: { name: c.name, arguments: c.arguments } }] }, finish_reason: null }] }),
        );
        const finish = reply.toolCalls ? 'tool_calls' : 'stop';
        sse(res, { ...base, choices: [{ index: 0, delta: {}, finish_reason: finish }] });
        const prompt = Math.ceil(raw.length / 4);
        sse(res, { ...base, choices: [], usage: { prompt_tokens: prompt, completion_tokens: words.length + 1, total_tokens: prompt + words.length + 1 } });
        res.end('data: [DONE]\n\n');
      })();
    });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  const addr = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${addr.port}/v1`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
