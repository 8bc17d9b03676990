import { describe, expect, it } from 'vitest';
import { translateLlamaServerError } from './engine.js';

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
