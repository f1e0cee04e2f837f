// Merchant-category data for the policy engine: Stripe Issuing category names, the MCCs each one
// covers, friendly groups ("gambling", "travel", ...) and the lookups that resolve policy names to
// MCCs. Pure data and small functions; nothing is read from disk at run time.
//
// Where the data comes from:
// - The 295 category names: the `AllowedCategory` / `BlockedCategory` enum of Stripe's Node SDK
//   (stripe-node `Issuing.Card.SpendingControls`, API version 2026-07-29.dahlia). The typo
//   `government_licensed_online_casions_online_gambling_us_region_only` is Stripe's own.
// - Name → MCC: Stripe's "Issuing merchant categories" page, table "Category / MCC"
//   (https://docs.stripe.com/issuing/categories), as transcribed in the MIT-licensed
//   hackclub/yellow_pages gem (`lib/yellow_pages/categories.yaml`, commit 8a135e2). That gives an MCC
//   for 294 of the 295 names. Cross-check: the older Stripe table
//   (https://gist.github.com/export-mike/a885784f0c867b7ed9ba9187e15c0884, taken from
//   stripe.com/docs/connect/setting-mcc) agrees on all 287 of its entries (286 names, plus
//   `childrens_and_infants_wear_stores` under an older spelling). The 7 newer names marked [D] are
//   only in the docs table; their codes match the networks' own: 5552 EV charging (ccv.eu, 2020),
//   5262 Visa marketplaces (developer.worldpay.com), 7800–7802 and 9702 (greggles list), 9406
//   government-owned lotteries outside the US (cryptocardslist.com/mcc/9406.html).
//   No pair in this table is inferred.
// - `miscellaneous` has no MCC: Stripe's page says businesses that fit no specific category are
//   categorized as `miscellaneous`. It resolves to no MCCs; match it by Stripe category name.
// - MCC list: greggles/mcc-codes (public domain, https://github.com/greggles/mcc-codes), shipped as
//   data/mcc_codes.csv with the newer codes it lacks appended: 5262, 5552, 6540, 9406.
// - Groups: spendgate's processor reference, §5.2 "Friendly groups". Crypto has no Stripe category:
//   Mastercard requires MCC 6051 for crypto purchases, Visa puts crypto asset transfers under 4829,
//   and brokers (6211) and stored-value loads (6540) are also used, so the group covers all four.
//
// Each Stripe category has exactly one MCC (except `miscellaneous`), and no MCC belongs to two.
// Brand MCCs (airlines 3000–3299, car rental 3351–3441, lodging 3501–3999) are in no Stripe category
// here: Stripe does not document which category it reports for them. The `travel` group covers them
// as extra MCCs.

/** Stripe Issuing category name → the MCCs (4-digit, zero-padded strings) it covers. All 295 names. */
export const STRIPE_CATEGORY_MCCS: Readonly<Record<string, readonly string[]>> = freezeValues({
  ac_refrigeration_repair: ['7623'],
  accounting_bookkeeping_services: ['8931'],
  advertising_services: ['7311'],
  agricultural_cooperative: ['0763'],
  airlines_air_carriers: ['4511'],
  airports_flying_fields: ['4582'],
  ambulance_services: ['4119'],
  amusement_parks_carnivals: ['7996'],
  antique_reproductions: ['5937'],
  antique_shops: ['5932'],
  aquariums: ['7998'],
  architectural_surveying_services: ['8911'],
  art_dealers_and_galleries: ['5971'],
  artists_supply_and_craft_shops: ['5970'],
  auto_and_home_supply_stores: ['5531'],
  auto_body_repair_shops: ['7531'],
  auto_paint_shops: ['7535'],
  auto_service_shops: ['7538'],
  automated_cash_disburse: ['6011'],
  automated_fuel_dispensers: ['5542'],
  automobile_associations: ['8675'],
  automotive_parts_and_accessories_stores: ['5533'],
  automotive_tire_stores: ['5532'],
  bail_and_bond_payments: ['9223'],
  bakeries: ['5462'],
  bands_orchestras: ['7929'],
  barber_and_beauty_shops: ['7230'],
  betting_casino_gambling: ['7995'],
  bicycle_shops: ['5940'],
  billiard_pool_establishments: ['7932'],
  boat_dealers: ['5551'],
  boat_rentals_and_leases: ['4457'],
  book_stores: ['5942'],
  books_periodicals_and_newspapers: ['5192'],
  bowling_alleys: ['7933'],
  bus_lines: ['4131'],
  business_secretarial_schools: ['8244'],
  buying_shopping_services: ['7278'],
  cable_satellite_and_other_pay_television_and_radio: ['4899'],
  camera_and_photographic_supply_stores: ['5946'],
  candy_nut_and_confectionery_stores: ['5441'],
  car_and_truck_dealers_new_used: ['5511'],
  car_and_truck_dealers_used_only: ['5521'],
  car_rental_agencies: ['7512'],
  car_washes: ['7542'],
  carpentry_services: ['1750'],
  carpet_upholstery_cleaning: ['7217'],
  caterers: ['5811'],
  charitable_and_social_service_organizations_fundraising: ['8398'],
  chemicals_and_allied_products: ['5169'],
  child_care_services: ['8351'],
  childrens_and_infants_wear_stores: ['5641'],
  chiropodists_podiatrists: ['8049'],
  chiropractors: ['8041'],
  cigar_stores_and_stands: ['5993'],
  civic_social_fraternal_associations: ['8641'],
  cleaning_and_maintenance: ['7349'],
  clothing_rental: ['7296'],
  colleges_universities: ['8220'],
  commercial_equipment: ['5046'],
  commercial_footwear: ['5139'],
  commercial_photography_art_and_graphics: ['7333'],
  commuter_transport_and_ferries: ['4111'],
  computer_network_services: ['4816'],
  computer_programming: ['7372'],
  computer_repair: ['7379'],
  computer_software_stores: ['5734'],
  computers_peripherals_and_software: ['5045'],
  concrete_work_services: ['1771'],
  construction_materials: ['5039'],
  consulting_public_relations: ['7392'],
  correspondence_schools: ['8241'],
  cosmetic_stores: ['5977'],
  counseling_services: ['7277'],
  country_clubs: ['7997'],
  courier_services: ['4215'],
  court_costs: ['9211'],
  credit_reporting_agencies: ['7321'],
  cruise_lines: ['4411'],
  dairy_products_stores: ['5451'],
  dance_hall_studios_schools: ['7911'],
  dating_escort_services: ['7273'],
  dentists_orthodontists: ['8021'],
  department_stores: ['5311'],
  detective_agencies: ['7393'],
  digital_goods_applications: ['5817'],
  digital_goods_games: ['5816'],
  digital_goods_large_volume: ['5818'],
  digital_goods_media: ['5815'],
  direct_marketing_catalog_merchant: ['5964'],
  direct_marketing_combination_catalog_and_retail_merchant: ['5965'],
  direct_marketing_inbound_telemarketing: ['5967'],
  direct_marketing_insurance_services: ['5960'],
  direct_marketing_other: ['5969'],
  direct_marketing_outbound_telemarketing: ['5966'],
  direct_marketing_subscription: ['5968'],
  direct_marketing_travel: ['5962'],
  discount_stores: ['5310'],
  doctors: ['8011'],
  door_to_door_sales: ['5963'],
  drapery_window_covering_and_upholstery_stores: ['5714'],
  drinking_places: ['5813'],
  drug_stores_and_pharmacies: ['5912'],
  drugs_drug_proprietaries_and_druggist_sundries: ['5122'],
  dry_cleaners: ['7216'],
  durable_goods: ['5099'],
  duty_free_stores: ['5309'],
  eating_places_restaurants: ['5812'],
  educational_services: ['8299'],
  electric_razor_stores: ['5997'],
  electric_vehicle_charging: ['5552'], // [D]; newer code, not in the greggles list
  electrical_parts_and_equipment: ['5065'],
  electrical_services: ['1731'],
  electronics_repair_shops: ['7622'],
  electronics_stores: ['5732'],
  elementary_secondary_schools: ['8211'],
  emergency_services_gcas_visa_use_only: ['9702'], // [D]
  employment_temp_agencies: ['7361'],
  equipment_rental: ['7394'],
  exterminating_services: ['7342'],
  family_clothing_stores: ['5651'],
  fast_food_restaurants: ['5814'],
  financial_institutions: ['6012'],
  fines_government_administrative_entities: ['9222'],
  fireplace_fireplace_screens_and_accessories_stores: ['5718'],
  floor_covering_stores: ['5713'],
  florists: ['5992'],
  florists_supplies_nursery_stock_and_flowers: ['5193'],
  freezer_and_locker_meat_provisioners: ['5422'],
  fuel_dealers_non_automotive: ['5983'],
  funeral_services_crematories: ['7261'],
  furniture_home_furnishings_and_equipment_stores_except_appliances: ['5712'],
  furniture_repair_refinishing: ['7641'],
  furriers_and_fur_shops: ['5681'],
  general_services: ['1520'],
  gift_card_novelty_and_souvenir_shops: ['5947'],
  glass_paint_and_wallpaper_stores: ['5231'],
  glassware_crystal_stores: ['5950'],
  golf_courses_public: ['7992'],
  government_licensed_horse_dog_racing_us_region_only: ['7802'], // [D]
  government_licensed_online_casions_online_gambling_us_region_only: ['7801'], // [D]
  government_owned_lotteries_non_us_region: ['9406'], // [D]; newer code, not in the greggles list
  government_owned_lotteries_us_region_only: ['7800'], // [D]
  government_services: ['9399'],
  grocery_stores_supermarkets: ['5411'],
  hardware_equipment_and_supplies: ['5072'],
  hardware_stores: ['5251'],
  health_and_beauty_spas: ['7298'],
  hearing_aids_sales_and_supplies: ['5975'],
  heating_plumbing_a_c: ['1711'],
  hobby_toy_and_game_shops: ['5945'],
  home_supply_warehouse_stores: ['5200'],
  hospitals: ['8062'],
  hotels_motels_and_resorts: ['7011'],
  household_appliance_stores: ['5722'],
  industrial_supplies: ['5085'],
  information_retrieval_services: ['7375'],
  insurance_default: ['6399'],
  insurance_underwriting_premiums: ['6300'],
  intra_company_purchases: ['9950'],
  jewelry_stores_watches_clocks_and_silverware_stores: ['5944'],
  landscaping_services: ['0780'],
  laundries: ['7211'],
  laundry_cleaning_services: ['7210'],
  legal_services_attorneys: ['8111'],
  luggage_and_leather_goods_stores: ['5948'],
  lumber_building_materials_stores: ['5211'],
  manual_cash_disburse: ['6010'],
  marinas_service_and_supplies: ['4468'],
  marketplaces: ['5262'], // [D]; newer code, not in the greggles list
  masonry_stonework_and_plaster: ['1740'],
  massage_parlors: ['7297'],
  medical_and_dental_labs: ['8071'],
  medical_dental_ophthalmic_and_hospital_equipment_and_supplies: ['5047'],
  medical_services: ['8099'],
  membership_organizations: ['8699'],
  mens_and_boys_clothing_and_accessories_stores: ['5611'],
  mens_womens_clothing_stores: ['5691'],
  metal_service_centers: ['5051'],
  // Stripe's catch-all for businesses that fit no specific category: no MCC of its own.
  miscellaneous: [],
  miscellaneous_apparel_and_accessory_shops: ['5699'],
  miscellaneous_auto_dealers: ['5599'],
  miscellaneous_business_services: ['7399'],
  miscellaneous_food_stores: ['5499'],
  miscellaneous_general_merchandise: ['5399'],
  miscellaneous_general_services: ['7299'],
  miscellaneous_home_furnishing_specialty_stores: ['5719'],
  miscellaneous_publishing_and_printing: ['2741'],
  miscellaneous_recreation_services: ['7999'],
  miscellaneous_repair_shops: ['7699'],
  miscellaneous_specialty_retail: ['5999'],
  mobile_home_dealers: ['5271'],
  motion_picture_theaters: ['7832'],
  motor_freight_carriers_and_trucking: ['4214'],
  motor_homes_dealers: ['5592'],
  motor_vehicle_supplies_and_new_parts: ['5013'],
  motorcycle_shops_and_dealers: ['5571'],
  motorcycle_shops_dealers: ['5561'],
  music_stores_musical_instruments_pianos_and_sheet_music: ['5733'],
  news_dealers_and_newsstands: ['5994'],
  non_fi_money_orders: ['6051'],
  non_fi_stored_value_card_purchase_load: ['6540'], // newer code, not in the greggles list
  nondurable_goods: ['5199'],
  nurseries_lawn_and_garden_supply_stores: ['5261'],
  nursing_personal_care: ['8050'],
  office_and_commercial_furniture: ['5021'],
  opticians_eyeglasses: ['8043'],
  optometrists_ophthalmologist: ['8042'],
  orthopedic_goods_prosthetic_devices: ['5976'],
  osteopaths: ['8031'],
  package_stores_beer_wine_and_liquor: ['5921'],
  paints_varnishes_and_supplies: ['5198'],
  parking_lots_garages: ['7523'],
  passenger_railways: ['4112'],
  pawn_shops: ['5933'],
  pet_shops_pet_food_and_supplies: ['5995'],
  petroleum_and_petroleum_products: ['5172'],
  photo_developing: ['7395'],
  photographic_photocopy_microfilm_equipment_and_supplies: ['5044'],
  photographic_studios: ['7221'],
  picture_video_production: ['7829'],
  piece_goods_notions_and_other_dry_goods: ['5131'],
  plumbing_heating_equipment_and_supplies: ['5074'],
  political_organizations: ['8651'],
  postal_services_government_only: ['9402'],
  precious_stones_and_metals_watches_and_jewelry: ['5094'],
  professional_services: ['8999'],
  public_warehousing_and_storage: ['4225'],
  quick_copy_repro_and_blueprint: ['7338'],
  railroads: ['4011'],
  real_estate_agents_and_managers_rentals: ['6513'],
  record_stores: ['5735'],
  recreational_vehicle_rentals: ['7519'],
  religious_goods_stores: ['5973'],
  religious_organizations: ['8661'],
  roofing_siding_sheet_metal: ['1761'],
  secretarial_support_services: ['7339'],
  security_brokers_dealers: ['6211'],
  service_stations: ['5541'],
  sewing_needlework_fabric_and_piece_goods_stores: ['5949'],
  shoe_repair_hat_cleaning: ['7251'],
  shoe_stores: ['5661'],
  small_appliance_repair: ['7629'],
  snowmobile_dealers: ['5598'],
  special_trade_services: ['1799'],
  specialty_cleaning: ['2842'],
  sporting_goods_stores: ['5941'],
  sporting_recreation_camps: ['7032'],
  sports_and_riding_apparel_stores: ['5655'],
  sports_clubs_fields: ['7941'],
  stamp_and_coin_stores: ['5972'],
  stationary_office_supplies_printing_and_writing_paper: ['5111'],
  stationery_stores_office_and_school_supply_stores: ['5943'],
  swimming_pools_sales: ['5996'],
  t_ui_travel_germany: ['4723'],
  tailors_alterations: ['5697'],
  tax_payments_government_agencies: ['9311'],
  tax_preparation_services: ['7276'],
  taxicabs_limousines: ['4121'],
  telecommunication_equipment_and_telephone_sales: ['4812'],
  telecommunication_services: ['4814'],
  telegraph_services: ['4821'],
  tent_and_awning_shops: ['5998'],
  testing_laboratories: ['8734'],
  theatrical_ticket_agencies: ['7922'],
  timeshares: ['7012'],
  tire_retreading_and_repair: ['7534'],
  tolls_bridge_fees: ['4784'],
  tourist_attractions_and_exhibits: ['7991'],
  towing_services: ['7549'],
  trailer_parks_campgrounds: ['7033'],
  transportation_services: ['4789'],
  travel_agencies_tour_operators: ['4722'],
  truck_stop_iteration: ['7511'],
  truck_utility_trailer_rentals: ['7513'],
  typesetting_plate_making_and_related_services: ['2791'],
  typewriter_stores: ['5978'],
  u_s_federal_government_agencies_or_departments: ['9405'],
  uniforms_commercial_clothing: ['5137'],
  used_merchandise_and_secondhand_stores: ['5931'],
  utilities: ['4900'],
  variety_stores: ['5331'],
  veterinary_services: ['0742'],
  video_amusement_game_supplies: ['7993'],
  video_game_arcades: ['7994'],
  video_tape_rental_stores: ['7841'],
  vocational_trade_schools: ['8249'],
  watch_jewelry_repair: ['7631'],
  welding_repair: ['7692'],
  wholesale_clubs: ['5300'],
  wig_and_toupee_stores: ['5698'],
  wires_money_orders: ['4829'],
  womens_accessory_and_specialty_shops: ['5631'],
  womens_ready_to_wear_stores: ['5621'],
  wrecking_and_salvage_yards: ['5935'],
});

/** Inclusive [from, to] runs of MCCs, expanded to 4-digit strings. */
function mccRuns(...runs: readonly (readonly [number, number])[]): string[] {
  const out: string[] = [];
  for (const [from, to] of runs) for (let code = from; code <= to; code++) out.push(String(code).padStart(4, '0'));
  return out;
}

interface CategoryGroup {
  description: string;
  stripeCategories: readonly string[];
  extraMccs: readonly string[];
}

/** Friendly group name → Stripe category names and/or extra MCCs it covers. */
export const CATEGORY_GROUPS: Readonly<Record<string, CategoryGroup>> = freezeValues({
  gambling: group('Betting, casinos, lotteries and licensed online gambling or racing', [
    'betting_casino_gambling', // 7995
    'government_owned_lotteries_us_region_only', // 7800
    'government_licensed_online_casions_online_gambling_us_region_only', // 7801
    'government_licensed_horse_dog_racing_us_region_only', // 7802
    'government_owned_lotteries_non_us_region', // 9406
  ]),
  cryptocurrency: group(
    'Crypto purchases and transfers (no Stripe category of their own): the MCCs networks require or allow for them',
    [
      'non_fi_money_orders', // 6051: Mastercard requires it for crypto purchases
      'wires_money_orders', // 4829: Visa's code for crypto asset transfers
      'security_brokers_dealers', // 6211
      'non_fi_stored_value_card_purchase_load', // 6540
    ],
  ),
  money_transfer: group('Wires, money orders, stored-value loads and other quasi-cash', [
    'wires_money_orders', // 4829
    'non_fi_money_orders', // 6051
    'non_fi_stored_value_card_purchase_load', // 6540
    'financial_institutions', // 6012
  ]),
  cash: group('Cash withdrawals (ATM and over the counter)', [
    'automated_cash_disburse', // 6011
    'manual_cash_disburse', // 6010
  ]),
  securities: group('Security brokers and dealers', ['security_brokers_dealers']), // 6211
  travel: group(
    'Airlines, lodging, car rental, travel agencies, cruises and campgrounds, including brand-specific MCCs',
    [
      'airlines_air_carriers', // 4511
      'airports_flying_fields', // 4582
      'car_rental_agencies', // 7512
      'hotels_motels_and_resorts', // 7011
      'travel_agencies_tour_operators', // 4722
      't_ui_travel_germany', // 4723
      'direct_marketing_travel', // 5962
      'cruise_lines', // 4411
      'timeshares', // 7012
      'trailer_parks_campgrounds', // 7033
      'recreational_vehicle_rentals', // 7519
      'boat_rentals_and_leases', // 4457
    ],
    // Brand MCCs, exactly those in the greggles list: airlines 3000–3299, car rental 3351–3441,
    // lodging 3501–3790 plus 3816 and 3835.
    mccRuns([3000, 3299], [3351, 3441], [3501, 3790], [3816, 3816], [3835, 3835]),
  ),
  transport: group('Local and ground transport: taxis, buses, rail, ferries, tolls and parking', [
    'taxicabs_limousines', // 4121
    'bus_lines', // 4131
    'passenger_railways', // 4112
    'railroads', // 4011
    'commuter_transport_and_ferries', // 4111
    'tolls_bridge_fees', // 4784
    'parking_lots_garages', // 7523
    'transportation_services', // 4789
  ]),
  adult: group('Dating and escort services, massage parlors, adult content (inbound teleservices)', [
    'dating_escort_services', // 7273
    'massage_parlors', // 7297
    'direct_marketing_inbound_telemarketing', // 5967
  ]),
  alcohol_tobacco: group('Liquor stores, bars and tobacco shops', [
    'package_stores_beer_wine_and_liquor', // 5921
    'drinking_places', // 5813
    'cigar_stores_and_stands', // 5993
  ]),
  government: group('Taxes, fines, court costs, bail, postal and other government services', [
    'tax_payments_government_agencies', // 9311
    'fines_government_administrative_entities', // 9222
    'court_costs', // 9211
    'bail_and_bond_payments', // 9223
    'government_services', // 9399
    'postal_services_government_only', // 9402
    'u_s_federal_government_agencies_or_departments', // 9405
  ]),
  pawn_secondhand: group('Pawn shops and second-hand stores', [
    'pawn_shops', // 5933
    'used_merchandise_and_secondhand_stores', // 5931
  ]),
  software_saas: group('Software, SaaS, cloud, digital goods, data and online business services', [
    'computer_software_stores', // 5734
    'computer_programming', // 7372
    'computer_network_services', // 4816
    'information_retrieval_services', // 7375
    'digital_goods_media', // 5815
    'digital_goods_games', // 5816
    'digital_goods_applications', // 5817
    'digital_goods_large_volume', // 5818
    'miscellaneous_business_services', // 7399
    'advertising_services', // 7311
    'consulting_public_relations', // 7392
    'telecommunication_services', // 4814
    'direct_marketing_subscription', // 5968
  ]),
});

function group(
  description: string,
  stripeCategories: readonly string[],
  extraMccs: readonly string[] = [],
): CategoryGroup {
  return Object.freeze({
    description,
    stripeCategories: Object.freeze([...stripeCategories]),
    extraMccs: Object.freeze([...extraMccs]),
  });
}

function freezeValues<T>(record: Record<string, T>): Readonly<Record<string, T>> {
  for (const value of Object.values(record)) Object.freeze(value);
  return Object.freeze(record);
}

export interface ResolvedCategories {
  mccs: ReadonlySet<string>;
  stripeCategories: readonly string[];
}

const key = (name: string): string => name.trim().toLowerCase();
const stripeByName = new Map(Object.entries(STRIPE_CATEGORY_MCCS));
const groupByName = new Map(Object.entries(CATEGORY_GROUPS));
const stripeByMcc = new Map([...stripeByName].flatMap(([name, mccs]) => mccs.map((mcc) => [mcc, name] as const)));

/**
 * Resolve names (Stripe category names, friendly group names, or raw 4-digit MCC strings like "5734"),
 * case-insensitive, surrounding whitespace ignored. Unknown names are returned in `unknown` (never
 * silently dropped), exactly as given.
 *
 * `stripeCategories` (sorted) lists the Stripe categories named directly or through a group, plus any
 * whose MCCs are all covered by the result (so "5734" also yields `computer_software_stores`).
 */
export function resolveCategories(names: readonly string[]): { resolved: ResolvedCategories; unknown: string[] } {
  const mccs = new Set<string>();
  const named = new Set<string>();
  const unknown: string[] = [];
  for (const name of names) {
    // Config parsers may hand over numbers (YAML `- 5734`); treat them like MCC strings.
    const k = typeof name === 'string' ? key(name) : String(name);
    const grp = groupByName.get(k);
    const mcc = normalizeMcc(k);
    if (grp) {
      grp.stripeCategories.forEach((c) => named.add(c));
      grp.extraMccs.forEach((m) => mccs.add(m));
    } else if (stripeByName.has(k)) named.add(k);
    else if (mcc) mccs.add(mcc);
    else unknown.push(typeof name === 'string' ? name : String(name));
  }
  for (const name of named) stripeByName.get(name)?.forEach((m) => mccs.add(m));
  const stripeCategories = [...stripeByName]
    .filter(([name, codes]) => named.has(name) || (codes.length > 0 && codes.every((m) => mccs.has(m))))
    .map(([name]) => name)
    .sort();
  return { resolved: { mccs, stripeCategories }, unknown };
}

const mccsByCategory = new Map<string, ReadonlySet<string>>();

/** The MCCs one category name or group covers, memoized (decide() asks on every card authorization). */
export function mccsOfCategory(name: string): ReadonlySet<string> {
  let found = mccsByCategory.get(name);
  if (!found) {
    found = resolveCategories([name]).resolved.mccs;
    if (mccsByCategory.size < 10_000) mccsByCategory.set(name, found);
  }
  return found;
}

/** The Stripe category name for an MCC, if any. */
export function stripeCategoryForMcc(mcc: string): string | undefined {
  const code = normalizeMcc(mcc);
  return code === undefined ? undefined : stripeByMcc.get(code);
}

/** The MCC(s) for a Stripe category name. */
export function mccsForStripeCategory(name: string): readonly string[] | undefined {
  return stripeByName.get(key(name));
}

/** Normalize an MCC from any processor ("742", 742, "0742") to a 4-digit string, or undefined if not a valid MCC. */
export function normalizeMcc(value: unknown): string | undefined {
  if (typeof value === 'number') {
    return Number.isInteger(value) && value >= 0 && value <= 9999 ? String(value).padStart(4, '0') : undefined;
  }
  if (typeof value !== 'string') return undefined;
  const digits = value.trim();
  return /^[0-9]{1,4}$/.test(digits) ? digits.padStart(4, '0') : undefined;
}

/** True for a Stripe category name or a group name (case-insensitive). Raw MCCs are not names. */
export function isKnownCategoryName(name: string): boolean {
  const k = key(name);
  return stripeByName.has(k) || groupByName.has(k);
}
