/** Reads a raw SSE response the way a reconnecting client must: ids, data, and where it ended. */
export interface SseEvent {
  id: string | null;
  data: string;
}

export async function* sseEvents(res: Response): AsyncGenerator<SseEvent> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  try {
    for (;;) {
      const r = await reader.read();
      if (r.done) return;
      buf += r.value;
      let cut: number;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const id = /^id: (.*)$/m.exec(block)?.[1] ?? null;
        const data = [...block.matchAll(/^data: (.*)$/gm)].map((m) => m[1]).join('\n');
        if (data) yield { id, data };
      }
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

/** The text a chunk adds to the assistant message (content only). */
export function contentOf(data: string): string {
  if (data === '[DONE]') return '';
  const j = JSON.parse(data) as { choices?: Array<{ delta?: { content?: string } }> };
  return j.choices?.[0]?.delta?.content ?? '';
}
