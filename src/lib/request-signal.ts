import type { ServerResponse } from 'node:http';

/**
 * An AbortSignal that aborts when the client goes away before the response is finished.
 * `dispose()` removes the listener; call it once the signal is no longer needed.
 */
export function requestSignal(res: ServerResponse): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const onClose = (): void => {
    if (!res.writableFinished)
      controller.abort(new DOMException('The client went away', 'AbortError'));
  };
  res.once('close', onClose);
  return { signal: controller.signal, dispose: () => res.off('close', onClose) };
}
