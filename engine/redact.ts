/** Secret redaction: what every log line, alert and CLI line goes through before it is written. */

/**
 * The password of any `scheme://user:password@host` URL in a text. Greedy up to the last `@` of a
 * run without spaces or quotes: a password typed with a raw `@` in it is still covered, and a
 * little too much hidden is better than a password shown.
 */
const URL_PASSWORD = /\b([A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s:/?#@'"]*):[^\s'"]*@/g;

/** `postgresql://u:pw@h/db` → `postgresql://u:***@h/db`, for every URL in `text`. */
export function redactUrls(text: string): string {
  return text.replace(URL_PASSWORD, '$1:***@');
}

/**
 * Replaces every secret (and its URL-encoded form) in `text` with `***`, and the password of any
 * URL, known or not: a usage error may echo a URL before anything has registered its password.
 */
export function redact(text: string, secrets: readonly string[]): string {
  let out = redactUrls(text);
  for (const s of secrets) {
    if (s.length < 3) continue;
    for (const form of new Set([s, encodeURIComponent(s)])) out = out.split(form).join('***');
  }
  return out;
}
