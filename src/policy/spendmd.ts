// SPEND.md → a policy document of JSON rules, plus the agent it names and the settings that are
// stored but not (yet) enforced. Errors name the file, the line and the key.
import { LineCounter, isMap, isPair, isScalar, parseDocument } from 'yaml';
import type { Node as YamlNode } from 'yaml';
import type { PolicyDocument } from './model.js';
import { compileEntries } from './spendmd-keys.js';
import type { Entry } from './spendmd-keys.js';

export interface SpendMdIssue {
  file: string;
  line: number;
  key: string;
  message: string;
}

export class SpendMdError extends Error {
  readonly issues: SpendMdIssue[];

  constructor(issues: SpendMdIssue[]) {
    issues = [...issues].sort((a, b) => a.line - b.line);
    super(issues.map((i) => `${i.file}: line ${i.line}: ${i.key ? `${i.key}: ` : ''}${i.message}`).join('\n'));
    this.issues = issues;
  }
}

/** A setting the file asks for that the gateway stores but does not act on. */
export interface Setting {
  key: string;
  line: number;
  value: unknown;
  note: string;
}

export interface SpendMdPolicy {
  agent: { id: string; owner: string; timezone?: string };
  document: PolicyDocument;
  /** Protective controls the gateway cannot enforce yet: applying needs an explicit override. */
  unenforced: Setting[];
  /** Settings of features not built yet that protect nothing by themselves. */
  inactive: Setting[];
  /** rule_id → where it came from, to point policy errors at the file. */
  origins: Record<string, { line: number; key: string }>;
}

const SECTIONS = { identity: '', spending: 'spend', approval: 'approval', notifications: 'notifications', security: 'security' } as const;
type Section = keyof typeof SECTIONS;

export function parseSpendMd(text: string, file = 'SPEND.md'): SpendMdPolicy {
  const issues: SpendMdIssue[] = [];
  const fail = (line: number, key: string, message: string) => issues.push({ file, line, key, message });
  const entries = new Map<string, Entry>();
  // A key set twice would silently loosen (or tighten) a limit: always an error.
  const add = (entry: Entry) => {
    const first = entries.get(entry.key);
    if (first) fail(entry.line, entry.key, `${entry.key} is set twice (first on line ${first.line})`);
    else entries.set(entry.key, entry);
  };

  for (const section of splitSections(text, fail)) {
    const wrapper = SECTIONS[section.name];
    const source = '\n'.repeat(section.firstLine - 1) + reindent(section.lines, wrapper).join('\n');
    const lineCounter = new LineCounter();
    const doc = parseDocument(source, { lineCounter, uniqueKeys: true, prettyErrors: false });
    for (const error of doc.errors) fail(lineCounter.linePos(error.pos[0]).line, '', `invalid YAML: ${error.message.split('\n')[0]}`);
    if (doc.errors.length > 0) continue;
    const lineOf = (node: YamlNode | null | undefined) => (node?.range ? lineCounter.linePos(node.range[0]).line : section.firstLine);
    if (doc.contents === null) continue;
    if (!isMap(doc.contents)) {
      fail(lineOf(doc.contents), wrapper, 'expected "key: value" lines');
      continue;
    }
    for (const pair of doc.contents.items) {
      if (!isScalar(pair.key)) {
        fail(lineOf(pair.key as YamlNode), wrapper, 'keys must be plain names');
        continue;
      }
      const top = String(pair.key.value);
      if (wrapper && top === wrapper) {
        if (pair.value === null || (isScalar(pair.value) && pair.value.value === null)) continue;
        if (!isMap(pair.value)) {
          fail(lineOf(pair.key as YamlNode), wrapper, 'expected keys under it');
          continue;
        }
        for (const inner of pair.value.items) {
          if (!isPair(inner) || !isScalar(inner.key)) {
            fail(lineOf((isPair(inner) ? inner.key : inner) as YamlNode), wrapper, 'keys must be plain names');
            continue;
          }
          const key = `${wrapper}.${String(inner.key.value)}`;
          add({ key, value: (inner.value as YamlNode | null)?.toJSON() ?? null, line: lineOf(inner.key as YamlNode) });
        }
      } else {
        const key = wrapper ? `${wrapper}.${top}` : top;
        add({ key, value: (pair.value as YamlNode | null)?.toJSON() ?? null, line: lineOf(pair.key as YamlNode) });
      }
    }
  }
  const result = compileEntries(entries, fail);
  if (issues.length > 0 || !result) throw new SpendMdError(issues.length > 0 ? issues : [{ file, line: 1, key: '', message: 'no policy found' }]);
  return result;
}

interface RawSection {
  name: Section;
  firstLine: number;
  lines: string[];
}

/** "## Spending - Start Restrictive" → section "spending"; fenced YAML wins over bare text. */
function splitSections(text: string, fail: (line: number, key: string, message: string) => void): RawSection[] {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  const sections: RawSection[] = [];
  let current: RawSection | undefined;
  let fence: { line: number; inside: boolean; seen: boolean } = { line: 0, inside: false, seen: false };
  lines.forEach((line, index) => {
    const heading = /^##(?!#)\s*([A-Za-z]+)/.exec(line);
    if (heading && !fence.inside) {
      const name = (heading[1] ?? '').toLowerCase();
      if (!(name in SECTIONS)) {
        fail(index + 1, '', `unknown section "${line.replace(/^#+\s*/, '')}" (expected Identity, Spending, Approval, Notifications or Security)`);
        current = undefined;
        return;
      }
      current = { name: name as Section, firstLine: index + 2, lines: [] };
      fence = { line: 0, inside: false, seen: false };
      sections.push(current);
      return;
    }
    if (!current) return; // the title and prose before the first section
    if (/^\s*(```|~~~)/.test(line)) {
      if (!fence.seen) current.lines = current.lines.map(() => ''); // bare text before a fence is prose
      fence = { line: index + 1, inside: !fence.inside, seen: true };
      current.lines.push('');
      return;
    }
    current.lines.push(fence.seen && !fence.inside ? '' : line);
  });
  return sections;
}

/**
 * "spend:" followed by unindented keys (as the seed's own examples are printed) means the same as
 * the indented form: every line after the wrapper key is pushed under it. Line numbers never move.
 * A body without the wrapper key is read as the keys under it (see parseSpendMd).
 */
function reindent(lines: string[], wrapper: string): string[] {
  if (!wrapper) return lines;
  const meaningful = (l: string) => l.trim() !== '' && !l.trim().startsWith('#');
  const first = lines.findIndex(meaningful);
  if (first === -1 || !new RegExp(`^${wrapper}:\\s*(#.*)?$`).test(lines[first] ?? '')) return lines;
  const next = lines.slice(first + 1).find(meaningful);
  if (next === undefined || /^\s+\S/.test(next)) return lines;
  return lines.map((l, i) => (i > first && l.trim() !== '' ? `  ${l}` : l));
}
