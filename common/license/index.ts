/** License files, verification, trial/licence evaluation and their database state. */
export * from './errors.js';
export * from './format.js';
export * from './keys.js';
export * from './service.js';
export * from './state.js';
export * from './store.js';
export * from './verifier.js';
