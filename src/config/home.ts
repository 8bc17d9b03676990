import envPaths from 'env-paths';
import path from 'node:path';

/** `$HEADROOM_HOME`, else the platform's data directory (e.g. ~/.local/share/headroom on Linux). */
export function resolveHome(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.HEADROOM_HOME;
  if (fromEnv && fromEnv.trim() !== '') return path.resolve(fromEnv);
  return envPaths('headroom', { suffix: '' }).data;
}

export interface HomeLayout {
  home: string;
  configFile: string;
  modelsDir: string;
  logsDir: string;
  stateDir: string;
}

export function homeLayout(home: string): HomeLayout {
  return {
    home,
    configFile: path.join(home, 'config.yaml'),
    modelsDir: path.join(home, 'models'),
    logsDir: path.join(home, 'logs'),
    stateDir: path.join(home, 'state'),
  };
}
