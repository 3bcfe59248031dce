/** The dialect of each `upstreams[].api`. */
import { anthropicMessages } from './anthropic';
import type { Dialect, UpstreamApi } from './dialect';
import { gemini } from './gemini';
import { openaiChat } from './openaiChat';
import { openaiResponses } from './responses';

const DIALECTS: Record<UpstreamApi, Dialect> = {
  'openai-chat': openaiChat,
  'anthropic-messages': anthropicMessages,
  gemini,
  'openai-responses': openaiResponses,
};

export const dialectFor = (api: UpstreamApi): Dialect => DIALECTS[api];
