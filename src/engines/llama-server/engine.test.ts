import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { RunnerConfig } from '../types.js';
import { LlamaServerEngine, translateLlamaServerError } from './engine.js';
import { runnerConfig } from '../../../test/helpers/runner.js';

describe('LlamaServerEngine.load', () => {
  it("counts a slot's cells as its n_prompt_tokens, which already hold the tokens it generated", async () => {
    // GET /slots as llama-server answers it mid-answer: a 14-token prompt, 103 tokens generated.
    const slots = [
      { id: 0, is_processing: true, n_prompt_tokens: 117, next_token: [{ n_decoded: 103 }] },
      { id: 1, is_processing: false, n_prompt_tokens: 40, next_token: [{ n_decoded: 0 }] },
    ];
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(slots));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const engine = new LlamaServerEngine({ binary: 'llama-server' });
      const load = await engine.load(url, {} as RunnerConfig, AbortSignal.timeout(5000));
      expect(load).toEqual({ tokensInUse: 157, busy: 1 });
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

describe('translateLlamaServerError', () => {
  it('turns exceed_context_size_error into context_length_exceeded with both counts', () => {
    const t = translateLlamaServerError(400, {
      error: {
        code: 400,
        message:
          'request (5000 tokens) exceeds the available context size (4096 tokens), try increasing it',
        type: 'exceed_context_size_error',
        n_prompt_tokens: 5000,
        n_ctx: 4096,
      },
    });
    expect(t).toMatchObject({
      status: 400,
      code: 'context_length_exceeded',
      details: { param: 'messages', promptTokens: 5000, contextSize: 4096 },
    });
    expect(t?.message).toContain('5000 tokens');
    expect(t?.message).toContain('4096');
  });

  it('says how to get embeddings from a chat runner', () => {
    const t = translateLlamaServerError(501, {
      error: {
        code: 501,
        message: 'This server does not support embeddings. Start it with `--embeddings`',
        type: 'not_supported_error',
      },
    });
    expect(t?.status).toBe(400);
    expect(t?.code).toBe('embeddings_unsupported');
    expect(t?.message).toContain('embeddings: true');
  });

  it('says how to get embeddings from a model that declares no pooling type', () => {
    const t = translateLlamaServerError(400, {
      error: {
        code: 400,
        message: "Pooling type 'none' is not OAI compatible. Please use a different pooling type",
        type: 'invalid_request_error',
      },
    });
    expect(t?.status).toBe(400);
    expect(t?.code).toBe('embeddings_unsupported');
    expect(t?.message).toContain('--pooling');
  });

  it('passes through what it does not know', () => {
    expect(translateLlamaServerError(500, { error: { type: 'server_error', message: 'x' } })).toBe(
      undefined,
    );
    expect(translateLlamaServerError(400, 'not json')).toBe(undefined);
    expect(translateLlamaServerError(400, null)).toBe(undefined);
  });
});

describe('LlamaServerEngine capabilities', () => {
  it('cancels prompt evaluation only for a binary with the cancel-prompt patch', () => {
    expect(
      new LlamaServerEngine({ binary: 'x', patched: true }).capabilities.cancelsPromptEvaluation,
    ).toBe(true);
    expect(new LlamaServerEngine({ binary: 'x' }).capabilities.cancelsPromptEvaluation).toBe(false);
  });
});

describe('LlamaServerEngine launch', () => {
  it('gives llama-server a slot save path when the daemon gives the runner a state directory (its /slots actions need one)', () => {
    const config = runnerConfig('/m.gguf', {
      engine: 'llama-server',
      contextSize: 1024,
      threads: 1,
    });
    const engine = new LlamaServerEngine({ binary: 'llama-server' });
    const args = engine.launch(config, {
      port: 1,
      name: 'm',
      stateDir: '/home/state/slots/m',
    }).args;
    expect(args[args.indexOf('--slot-save-path') + 1]).toBe('/home/state/slots/m');
    expect(engine.launch(config, { port: 1 }).args).not.toContain('--slot-save-path');
  });
});
