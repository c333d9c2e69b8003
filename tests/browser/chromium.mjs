// Debian's Chromium for the browser tests and benchmarks: headless, with WebGPU on SwiftShader
// (DEVELOPERS.md's flags; crate/webdriver.json repeats them for wasm-bindgen-test-runner), or
// without those flags, as a browser without WebGPU.
import { chromium } from 'playwright-core';

const WEBGPU_ARGS = [
  '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-angle=swiftshader',
  '--use-webgpu-adapter=swiftshader', '--enable-unsafe-swiftshader',
];
const BASE_ARGS = [
  '--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--disable-quic', '--no-first-run',
];

/**
 * A browser context with its profile in `dir`, WebGPU on: a real profile's storage quota (an
 * incognito context's is too small for a full-size model's 3.5 GB).
 */
export function launchPersistent(dir) {
  return chromium.launchPersistentContext(dir, { executablePath: '/usr/bin/chromium', args: [...WEBGPU_ARGS, ...BASE_ARGS] });
}

/** Launches /usr/bin/chromium (never a downloaded browser), with WebGPU unless told otherwise. */
export function launch({ webgpu = true } = {}) {
  return chromium.launch({ executablePath: '/usr/bin/chromium', args: webgpu ? [...WEBGPU_ARGS, ...BASE_ARGS] : BASE_ARGS });
}
