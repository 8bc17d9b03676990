/**
 * The composition root: the only module that wires every part. The CLI's `serve` and the
 * library entry (index.ts) start from here.
 */
export { Daemon, type DaemonOptions } from './daemon/daemon.js';
export { Headroom, createHeadroom, type HeadroomOptions, VERSION } from './daemon/headroom.js';
