// Card test helpers: Issuing cards made at the fake Stripe (as an operator would outside the
// gateway), registration through the admin API, and the freeze calls the fakes received.
import type { FakeStripe, RecordedRequest } from './fake-stripe.js';
import type { TestGateway } from './gateway.js';

export const STRIPE_KEY = 'sk_test_cardsfreeze';

/** An active virtual card at the fake Stripe naming `agentId` in its metadata. */
export async function stripeCard(fake: FakeStripe, agentId: string | null, status = 'active'): Promise<string> {
  const form = new URLSearchParams({ currency: 'usd', type: 'virtual', status });
  if (agentId) form.set('metadata[agent_id]', agentId);
  const res = await fetch(`${fake.url}/v1/issuing/cards`, { method: 'POST', headers: { authorization: `Bearer ${STRIPE_KEY}`, 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() });
  const card = (await res.json()) as { id: string };
  return card.id;
}

export async function registeredStripeCards(gw: TestGateway, fake: FakeStripe, agentId: string, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const id = await stripeCard(fake, agentId);
    const res = await gw.admin('POST', '/cards', { card_id: id, agent_id: agentId, processor: 'stripe' });
    if (res.status !== 201) throw new Error(`register: ${JSON.stringify(res.body)}`);
    ids.push(id);
  }
  return ids;
}

/** The card updates Stripe received, as "id status" lines. */
export function statusUpdates(requests: RecordedRequest[]): string[] {
  return requests
    .filter((r) => r.method === 'POST' && /^\/v1\/issuing\/cards\/ic_/.test(r.path) && r.form.status !== undefined)
    .map((r) => `${r.path.split('/').pop()} ${r.form.status}`);
}

export async function until(what: string, check: () => Promise<boolean> | boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
