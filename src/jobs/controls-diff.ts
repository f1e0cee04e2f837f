// Whether a card's spending controls at the processor are looser than the ones its policy
// derives: a missing or higher limit, categories or countries let through that should not be.
// Tighter controls (an operator's own choice) are not a finding.
import type { SpendingControls } from '../../adapters/processor.js';

export function loosenedControls(expected: SpendingControls, actual: SpendingControls): string[] {
  const found: string[] = [];
  for (const limit of expected.limits) {
    if (!actual.limits.some((l) => l.interval === limit.interval && l.amount <= limit.amount)) found.push(`${limit.interval} limit`);
  }
  if (expected.allowedCategories && !subset(actual.allowedCategories, expected.allowedCategories)) found.push('allowed_categories');
  if (expected.blockedCategories && !actual.allowedCategories && !subset(expected.blockedCategories, actual.blockedCategories ?? [])) found.push('blocked_categories');
  if (expected.allowedCountries && !subset(actual.allowedCountries, expected.allowedCountries)) found.push('allowed_countries');
  if (expected.blockedCountries && !actual.allowedCountries && !subset(expected.blockedCountries, actual.blockedCountries ?? [])) found.push('blocked_countries');
  return found;
}

/** Every item of `inner` is in `outer`; a missing `inner` list (no restriction) is never a subset. */
function subset(inner: string[] | null, outer: string[]): boolean {
  return inner !== null && inner.every((v) => outer.includes(v));
}
