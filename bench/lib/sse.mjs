// Server-sent events as the benches read them: OpenAI-style `data: {json}` events, `[DONE]` last.

/**
 * A push splitter for an SSE stream: give it text as it arrives; it calls `onData` with each
 * event's `data:` payload, parsed (`[DONE]` and other lines skipped).
 */
export function sseSplitter(onData) {
  let buf = '';
  return (text) => {
    buf += text;
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (ev.startsWith('data: ') && ev !== 'data: [DONE]') onData(JSON.parse(ev.slice(6)));
    }
  };
}

/**
 * Reads a streamed chat answer (a fetch Response) to its end: when its first and last content
 * arrived (performance.now(); 0 when none did), how many content events, and the usage and
 * llama-server timings its events carried.
 */
export async function readChatStream(res) {
  let first = 0;
  let last = 0;
  let tokens = 0;
  let usage;
  let timings;
  const feed = sseSplitter((data) => {
    if (data.usage) usage = data.usage;
    if (data.timings) timings = data.timings;
    if (data.choices?.[0]?.delta?.content) {
      const now = performance.now();
      if (!first) first = now;
      last = now;
      tokens++;
    }
  });
  const dec = new TextDecoder();
  for await (const chunk of res.body) feed(dec.decode(chunk, { stream: true }));
  return { first, last, tokens, usage, timings };
}
