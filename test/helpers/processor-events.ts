// Signed processor webhooks for end-to-end tests: Stripe Issuing events shaped from Stripe's own
// sample objects, Lithic ASA requests and transaction events typed by the lithic SDK, and the
// signature headers each processor would send with them.
//
//   const body = JSON.stringify(stripeAuthorizationRequest({ agentId: 'agt_1', amount: 2500 }));
//   post('/webhooks/stripe').set('Stripe-Signature', signStripe(body, secret)).send(body)
//
//   const asa = JSON.stringify(lithicAsaRequest({ cardToken, amount: 2500 }));
//   post('/webhooks/lithic').set({ ...signLithic(asa, secret) }).send(asa)
export * from './stripe-events.js';
export * from './lithic-events.js';
