/**
 * `openai-chat`: Chat Completions, the internal shape itself. The body goes as it is (with
 * `stream` and usage asked for); the events are chunks already, ended by `[DONE]`.
 */
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import type { Delta, Usage } from '../../domain/chat';
import { errorBody, parseJson, StreamFailure, type ChatChunk, type Dialect, type StreamDecoder } from './dialect';

class ChatDecoder implements StreamDecoder {
  done = false;

  event(_name: string | undefined, data: string): ChatChunk[] {
    if (data === '[DONE]') {
      this.done = true;
      return [];
    }
    const chunk = parseJson<Partial<ChatCompletionChunk> & ChatChunk>(data);
    if (chunk.error) {
      const e = chunk.error;
      throw new StreamFailure({ status: 502, message: e.message ?? 'upstream stream error', type: e.type ?? null, code: e.code ?? null, param: null });
    }
    return [chunk];
  }
}

/**
 * Another dialect's reasoning state (domain/chat `ReasoningDetail`) is not this upstream's to
 * read, and OpenAI refuses a message field it does not know.
 */
function withoutReasoningDetails<M extends object>(m: M): M {
  if (!('reasoning_details' in m)) return m;
  const { reasoning_details: _dropped, ...rest } = m as M & { reasoning_details?: unknown };
  return rest as M;
}

export const openaiChat: Dialect = {
  request: (body, cfg) => ({
    path: '/chat/completions',
    headers: { ...(cfg.apiKey ? { authorization: `Bearer ${cfg.apiKey}` } : {}) },
    body: { ...body, messages: body.messages.map(withoutReasoningDetails), stream: true, stream_options: { include_usage: true } },
  }),
  decoder: () => new ChatDecoder(),
  failure: errorBody,
  whole(j) {
    const choices = (j.choices as Array<{ message?: Record<string, unknown>; finish_reason?: string }>) ?? [];
    return [
      {
        id: j.id as string,
        model: j.model as string,
        usage: (j.usage as Usage) ?? null,
        choices: choices.map((c, index) => ({ index, delta: (c.message ?? {}) as Delta, finish_reason: c.finish_reason ?? 'stop' })),
      },
    ];
  },
};
