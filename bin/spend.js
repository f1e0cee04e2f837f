#!/usr/bin/env node
// The installed `spend` command: registers tsx so Node can load the TypeScript CLI, then runs it.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
await main();
