import type { FastifyInstance } from 'fastify';
import { parse as parseYaml } from 'yaml';
import type { ServerCore } from '../core.js';
import { BadRequestError, NotFoundError } from '../errors.js';

/** Largest config accepted by PUT /admin/config. */
const MAX_CONFIG_BYTES = 1024 * 1024;

/**
 * The config in force and its replacement: `GET /admin/config` (normalised: sizes in bytes,
 * durations in ms), `PUT /admin/config` with the config file's keys as JSON or YAML
 * (`content-type: application/yaml`). A replacement is validated, written to the config file
 * and swapped in without dropping a request; an invalid one is refused (400 naming each key)
 * and the config in force stays.
 */
export function configRoutes(app: FastifyInstance, core: ServerCore): void {
  const reload = core.reload;
  if (!reload) return;
  // Encapsulated: the YAML body parser applies to these routes only.
  void app.register(async (scope) => {
    scope.addContentTypeParser(
      ['application/yaml', 'application/x-yaml', 'text/yaml', 'text/x-yaml'],
      { parseAs: 'string', bodyLimit: MAX_CONFIG_BYTES },
      (_req, body, done) => {
        try {
          done(null, parseYaml(body as string) ?? {});
        } catch (err) {
          done(
            new BadRequestError(
              `the body is not valid YAML: ${(err as Error).message.split('\n')[0]}`,
              null,
              'invalid_request',
            ),
            undefined,
          );
        }
      },
    );

    scope.get('/admin/config', async () => ({
      file: reload.file ?? null,
      config: redactSecrets(reload.current()),
    }));

    scope.put('/admin/config', { bodyLimit: MAX_CONFIG_BYTES }, async (req) => {
      if (req.body === undefined || req.body === null)
        throw new BadRequestError(
          'PUT /admin/config takes the whole config as a JSON object or YAML (content-type: application/yaml)',
          null,
          'invalid_request',
        );
      return reload.replace(req.body);
    });

    scope.post('/admin/config/reload', async () => {
      if (!reload.file)
        throw new NotFoundError(
          'this daemon was started without a config file: there is nothing to reload',
          'unknown_route',
        );
      return reload.fromFile();
    });
  });
}

/** apiKey(s), key(s), secret(s), password(s), token, and camelCase ends such as authToken, adminApiKey. */
const SECRET_KEY =
  /^(?:api[-_]?keys?|keys?|secrets?|passwords?|tokens?)$|(?:ApiKeys?|Secrets?|Passwords?|Token)$/i;

/** The config with the values of secret-looking keys (apiKey, tokens, …) replaced: never echoed. */
export function redactSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactSecrets);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [
      k,
      SECRET_KEY.test(k) && v !== undefined && v !== null ? '[redacted]' : redactSecrets(v),
    ]),
  );
}
