// V8 settings for the gateway process, applied before any other module is evaluated (main.ts
// imports this first).
//
// Allocation-site pretenuring off. Under load V8 sees objects a decision allocates survive a
// scavenge (they do, while their batch is in flight) and starts allocating such objects straight
// in the old generation: from then on much of every decision's garbage waits for a mark-compact.
// Without it, at 500 authorizations/s the scavenges are shorter and there are fewer mark-compacts
// (README, "Measured").
import v8 from 'node:v8';

v8.setFlagsFromString('--no-allocation-site-pretenuring');
