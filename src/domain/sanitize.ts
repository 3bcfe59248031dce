/**
 * What of an upstream's error text a client may see: no HTML pages or tracebacks, no file paths,
 * no key fragments or bearer tokens, one line, at most `MAX_CLIENT_MESSAGE` characters. The full
 * text stays in the activity failure in Temporal's history, for operators.
 */
export const MAX_CLIENT_MESSAGE = 512;

const HTML_PAGE = /<(?:!doctype|html|head|body)\b/i;
const TAG = /<\/?[a-z][^>]*>/gi;
const TRACEBACK = /\bTraceback \(most recent call last\)[\s\S]*$/;
// Absolute paths (not the path part of a URL): /srv/app/x.py, C:\app\x.py, file:///…
const UNIX_PATH = /(^|[\s"'(=,[])\/(?:[\w.@~+-]+\/)+[\w.@~+-]*/g;
const WIN_PATH = /\b[A-Za-z]:\\(?:[^\\\s"']+\\)*[^\\\s"']*/g;
const FILE_URL = /\bfile:\/\/\S+/gi;
// Keys and tokens, whole or masked: sk-proj-****abcd, Bearer …, api_key=…
const KEY = /\b(?:sk|rk|pk|ak)-[\w*.-]{3,}/gi;
const BEARER = /\bBearer\s+\S+/gi;
const NAMED_SECRET = /\b(api[_-]?key|access[_-]?token|token|secret|password)(["']?\s*[:=]\s*["']?)[^\s"',;}]+/gi;

export function clientSafeMessage(text: string): string {
  let s = text;
  if (HTML_PAGE.test(s)) s = 'the upstream answered with an HTML error page';
  s = s.replace(TRACEBACK, '(traceback omitted)');
  s = s.replace(TAG, ' ');
  s = s.replace(FILE_URL, '<path>');
  s = s.replace(UNIX_PATH, '$1<path>');
  s = s.replace(WIN_PATH, '<path>');
  s = s.replace(BEARER, 'Bearer <redacted>');
  s = s.replace(KEY, '<redacted>');
  s = s.replace(NAMED_SECRET, '$1$2<redacted>');
  s = s.replace(/\s+/g, ' ').trim();
  if (s.length > MAX_CLIENT_MESSAGE) s = `${s.slice(0, MAX_CLIENT_MESSAGE - 1)}…`;
  return s || 'the upstream gave no message';
}
