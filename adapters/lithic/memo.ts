// Lithic cards have no metadata: spendgate keeps its tags in the card's memo as `key=value`
// words ("agent_id=bot-7 team=ops" or "Ads budget [agent_id=bot-7]"), so the agent a card belongs
// to survives outside the gateway and can be found with Lithic's memo search.

const TAG = /(?:^|[\s[,;(])([a-z_][a-z0-9_]*)=([A-Za-z0-9_.:@-]+)/g;

export function memoTags(memo: string | null | undefined): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const match of (memo ?? '').matchAll(TAG)) {
    const [, key, value] = match;
    if (key && value && !(key in tags)) tags[key] = value;
  }
  return tags;
}

export function agentTag(agentId: string): string {
  return `agent_id=${agentId}`;
}
