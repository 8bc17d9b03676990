import { describe, expect, it } from 'vitest';
import {
  RECIPE_VERSION,
  cacheKey,
  chooseBackend,
  estimateText,
  fullSourceCmakeDefs,
  inputsHash,
  logTail,
  parseCacheKey,
  parseProgress,
  parseVersionOutput,
  pickPrebuiltLibs,
  platformPackage,
  prebuiltCmakeDefs,
  progressBar,
  progressPercent,
  recordedCmakeOptions,
  runsOnCpu,
  runtimeLibs,
  type BuildInputs,
} from './build.js';

const inputs: BuildInputs = {
  nodeLlamaCpp: '3.22.1',
  tag: 'v0.5.0',
  platform: 'linux',
  arch: 'x64',
  recipe: RECIPE_VERSION,
};

/** node-llama-cpp 3.22.1's @node-llama-cpp/linux-x64-cuda bins folder. */
const CUDA_BINS = [
  '_nlcBuildMetadata.json',
  'libggml-base.so',
  'libggml-cpu-haswell.so',
  'libggml-cpu-x64.so',
  'libggml-cuda.so',
  'libggml.cuda.v0.5.0.so',
  'libllama-common.so',
  'libllama.cuda.v0.5.0.so',
  'llama-addon.node',
];

describe('cache key', () => {
  it('is <tag>-<backend>-<10 hex> and parses back', () => {
    const key = cacheKey(inputs, 'cpu');
    expect(key).toMatch(/^v0\.5\.0-cpu-[0-9a-f]{10}$/);
    expect(parseCacheKey(key)).toEqual({ tag: 'v0.5.0', backend: 'cpu', hash: inputsHash(inputs) });
    expect(parseCacheKey('v0.5.0-cpu-xyz')).toBeUndefined();
  });

  it('changes with every input, not with key order', () => {
    const base = inputsHash(inputs);
    for (const [k, v] of Object.entries({
      nodeLlamaCpp: '3.22.2',
      tag: 'v0.5.1',
      platform: 'darwin',
      arch: 'arm64',
      recipe: RECIPE_VERSION + 1,
    }))
      expect(inputsHash({ ...inputs, [k]: v })).not.toBe(base);
    const reordered = Object.fromEntries(Object.entries(inputs).reverse()) as BuildInputs;
    expect(inputsHash(reordered)).toBe(base);
  });

  it('keeps a tag with odd characters a single path segment', () => {
    expect(cacheKey({ ...inputs, tag: 'b1/../x' }, 'cuda')).toMatch(/^b1_\.\._x-cuda-/);
  });
});

describe('runsOnCpu', () => {
  it('a portable build runs on any CPU; a native one only on the CPU it was built on', () => {
    expect(runsOnCpu({ native: false, cpu: 'Intel Xeon' }, 'AMD EPYC')).toBe(true);
    expect(runsOnCpu({ native: true, cpu: 'AMD EPYC' }, 'AMD EPYC')).toBe(true);
    expect(runsOnCpu({ native: true, cpu: 'Intel Xeon' }, 'AMD EPYC')).toBe(false);
  });
});

describe('backend and platform package', () => {
  it('prefers metal, then cuda, then vulkan, else cpu', () => {
    expect(chooseBackend([])).toBe('cpu');
    expect(chooseBackend(['vulkan'])).toBe('vulkan');
    expect(chooseBackend(['vulkan', 'cuda'])).toBe('cuda');
    expect(chooseBackend(['metal'])).toBe('metal');
  });

  it('names node-llama-cpp platform packages as it does', () => {
    expect(platformPackage('linux', 'x64', 'cpu')).toBe('linux-x64');
    expect(platformPackage('linux', 'x64', 'cuda')).toBe('linux-x64-cuda');
    expect(platformPackage('linux', 'x64', 'vulkan')).toBe('linux-x64-vulkan');
    expect(platformPackage('linux', 'arm64', 'cpu')).toBe('linux-arm64');
    expect(platformPackage('linux', 'arm', 'cpu')).toBe('linux-armv7l');
    expect(platformPackage('linux', 'x64', 'metal')).toBeUndefined();
    expect(platformPackage('darwin', 'arm64', 'metal')).toBe('mac-arm64-metal');
    expect(platformPackage('darwin', 'x64', 'cpu')).toBe('mac-x64');
    expect(platformPackage('win32', 'x64', 'cpu')).toBeUndefined();
  });
});

describe('prebuilt libraries', () => {
  it('picks the four linked libraries whatever their variant suffix', () => {
    expect(pickPrebuiltLibs(CUDA_BINS)).toEqual({
      ggmlBase: 'libggml-base.so',
      ggml: 'libggml.cuda.v0.5.0.so',
      llama: 'libllama.cuda.v0.5.0.so',
      llamaCommon: 'libllama-common.so',
    });
    expect(
      pickPrebuiltLibs([
        'libggml-base.dylib',
        'libggml.v0.5.0.dylib',
        'libllama.v0.5.0.dylib',
        'libllama-common.dylib',
        'libggml-metal.dylib',
      ]),
    ).toEqual({
      ggmlBase: 'libggml-base.dylib',
      ggml: 'libggml.v0.5.0.dylib',
      llama: 'libllama.v0.5.0.dylib',
      llamaCommon: 'libllama-common.dylib',
    });
  });

  it('is undefined when one is missing', () => {
    expect(pickPrebuiltLibs(CUDA_BINS.filter((f) => f !== 'libllama-common.so'))).toBeUndefined();
  });

  it('copies every shared library, not the addon or the metadata', () => {
    expect(runtimeLibs(CUDA_BINS)).toEqual([
      'libggml-base.so',
      'libggml-cpu-haswell.so',
      'libggml-cpu-x64.so',
      'libggml-cuda.so',
      'libggml.cuda.v0.5.0.so',
      'libllama-common.so',
      'libllama.cuda.v0.5.0.so',
    ]);
  });
});

describe('cmake arguments', () => {
  it('full source: static, offline, native, and the backend switch', () => {
    const cpu = fullSourceCmakeDefs('cpu');
    expect(cpu).toEqual(
      expect.arrayContaining([
        '-DCMAKE_BUILD_TYPE=Release',
        '-DBUILD_SHARED_LIBS=OFF',
        '-DLLAMA_USE_PREBUILT_UI=OFF',
        '-DLLAMA_OPENSSL=OFF',
        '-DGGML_NATIVE=ON',
      ]),
    );
    expect(cpu.some((d) => /GGML_(CUDA|VULKAN|METAL)/.test(d))).toBe(false);
    expect(fullSourceCmakeDefs('cuda')).toContain('-DGGML_CUDA=ON');
    expect(fullSourceCmakeDefs('vulkan')).toContain('-DGGML_VULKAN=ON');
    expect(fullSourceCmakeDefs('metal')).toContain('-DGGML_METAL=ON');
  });

  it('prebuilt libs: the source, the bins folder and the library names; recorded without paths', () => {
    const defs = prebuiltCmakeDefs('/w/llama.cpp', '/nm/bins/linux-x64-cuda', {
      ggmlBase: 'libggml-base.so',
      ggml: 'libggml.cuda.v0.5.0.so',
      llama: 'libllama.cuda.v0.5.0.so',
      llamaCommon: 'libllama-common.so',
    });
    expect(defs).toEqual(
      expect.arrayContaining([
        '-DLLAMA_SRC=/w/llama.cpp',
        '-DLLAMA_PREBUILT_DIR=/nm/bins/linux-x64-cuda',
        '-DGGML_LIB=libggml.cuda.v0.5.0.so',
        '-DLLAMA_LIB=libllama.cuda.v0.5.0.so',
        '-DLLAMA_OPENSSL=OFF',
      ]),
    );
    const recorded = recordedCmakeOptions(defs);
    expect(recorded.some((d) => d.includes('/w/') || d.includes('/nm/'))).toBe(false);
    expect(recorded).toContain('-DLLAMA_LIB=libllama.cuda.v0.5.0.so');
  });
});

describe('progress', () => {
  it("reads ninja's [n/N] and make's [ p%]; ignores other lines", () => {
    expect(parseProgress('[12/204] Building CXX object src/llama.cpp.o')).toEqual({
      done: 12,
      total: 204,
    });
    expect(parseProgress('[ 45%] Building CXX object x.o')).toEqual({ percent: 45 });
    expect(parseProgress('[100%] Linking CXX executable bin/llama-server')).toEqual({
      percent: 100,
    });
    expect(parseProgress('-- Configuring done')).toBeUndefined();
    expect(parseProgress('In file included from [1/2]')).toBeUndefined();
    expect(parseProgress('[0/0] nothing')).toBeUndefined();
  });

  it('renders a bar with the percentage and the step counts', () => {
    expect(progressPercent({ done: 77, total: 77 })).toBe(100);
    expect(progressPercent({ done: 1, total: 3 })).toBe(33);
    expect(progressBar({ done: 41, total: 82 }, 10)).toBe('[#####-----]  50% (41/82)');
    expect(progressBar({ percent: 7 }, 10)).toBe('[#---------]   7%');
  });
});

describe('text helpers', () => {
  it('estimates from the 2-core reference time, scaled by jobs down to a floor', () => {
    expect(estimateText('prebuilt-libs', 2)).toBe('about 3 min');
    expect(estimateText('full-source', 2)).toBe('about 6 min');
    expect(estimateText('full-source', 4)).toBe('about 3 min');
    expect(estimateText('full-source', 64)).toBe('about 2 min');
    expect(estimateText('prebuilt-libs', 64)).toBe('about 1 min');
  });

  it('keeps the end of a log, cutting long lines', () => {
    const text = Array.from({ length: 50 }, (_, i) => `line ${i}`).join('\n') + '\n\n';
    const tail = logTail(text, 3);
    expect(tail).toBe('line 47\nline 48\nline 49');
    expect(logTail('x'.repeat(400), 1, 10)).toBe('xxxxxxxxxx…');
  });

  it('finds the version line among the log lines llama-server prints', () => {
    const out =
      '0.00.000.292 I srv  llama_server: initializing ...\nversion: 0.5.0-dev (build 1, commit de3ff81)\nbuilt with GNU 12.2.0 for Linux x86_64\n';
    expect(parseVersionOutput(out)).toBe('version: 0.5.0-dev (build 1, commit de3ff81)');
    expect(parseVersionOutput('usage: llama-server')).toBeUndefined();
  });
});
