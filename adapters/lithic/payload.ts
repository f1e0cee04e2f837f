// Reading Lithic's signed JSON defensively (see ../payload.ts).
import { header, payloadReaders } from '../payload.js';
import type { Json } from '../payload.js';

export type { Json };
export { header };
export const { parseObject, object, string, optionalString, integer, boolean, isoTime } = payloadReaders('lithic');
