import type { ServerResponse } from 'node:http';

/**
 * An AbortSignal that aborts when the client goes away before the response is finished: at once
 * when it already has (its 'close' came before this was asked for). `dispose()` removes the
 * listener; call it once the signal is no longer needed.
 */
export function requestSignal(res: ServerResponse): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const onClose = (): void => {
    if (!res.writableFinished)
      controller.abort(new DOMException('The client went away', 'AbortError'));
  };
  if (res.destroyed) {
    onClose();
    return { signal: controller.signal, dispose: () => undefined };
  }
  res.once('close', onClose);
  return { signal: controller.signal, dispose: () => res.off('close', onClose) };
}
