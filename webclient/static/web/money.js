// Money for display: integer minor units in, text out, with Stripe's currency table.
//
// The rule: amounts stay integers (BigInt for the arithmetic) from the API to the
// screen; no float ever touches an amount. The table mirrors billing/money.py:
// - two-decimal (most): 1050 USD is "10.50";
// - zero-decimal (JPY, KRW, …): 500 JPY is "500";
// - three-decimal (BHD, JOD, KWD, OMR, TND): 1230 KWD is "1.23" (Stripe's last
//   digit is always 0, and people write two decimals);
// - ISK and UGX: whole units sent to Stripe ×100, so 50000 ISK is "500".

// prettier-ignore
const ZERO_DECIMAL = new Set([
  "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga",
  "pyg", "rwf", "vnd", "vuv", "xaf", "xof", "xpf",
]);
const THREE_DECIMAL = new Set(["bhd", "jod", "kwd", "omr", "tnd"]);
const WHOLE_UNITS_SENT_X100 = new Set(["isk", "ugx"]);

/** How a currency is written (`decimals`) and how Stripe counts it (`exponent`). */
export function currencyRule(currency) {
  const code = String(currency || "").toLowerCase();
  if (ZERO_DECIMAL.has(code)) return { code, decimals: 0, exponent: 0 };
  if (THREE_DECIMAL.has(code)) return { code, decimals: 2, exponent: 3 };
  if (WHOLE_UNITS_SENT_X100.has(code)) return { code, decimals: 0, exponent: 2 };
  return { code, decimals: 2, exponent: 2 };
}

function toBigInt(minor) {
  if (typeof minor === "bigint") return minor;
  if (typeof minor === "number") {
    if (!Number.isSafeInteger(minor)) throw new TypeError(`${minor} is not an integer amount`);
    return BigInt(minor);
  }
  if (typeof minor === "string" && /^-?\d+$/.test(minor)) return BigInt(minor);
  throw new TypeError(`${minor} is not an integer amount`);
}

/**
 * The major-unit decimal string of a minor-unit integer: (1050, "usd") → "10.50".
 * This is also what the API's `amount` field takes ("what I expect to pay").
 */
export function minorToMajor(minor, currency) {
  const { decimals, exponent } = currencyRule(currency);
  let n = toBigInt(minor);
  const negative = n < 0n;
  if (negative) n = -n;
  const scale = 10n ** BigInt(exponent);
  const whole = n / scale;
  let fraction = n % scale;
  let digits = decimals;
  const unwritten = 10n ** BigInt(exponent - decimals);
  if (fraction % unwritten === 0n) {
    fraction /= unwritten;
  } else {
    // Not a valid amount for this currency: show every digit rather than hide one.
    digits = exponent;
  }
  const fractionText = digits ? "." + fraction.toString().padStart(digits, "0") : "";
  return `${negative ? "-" : ""}${whole}${fractionText}`;
}

/** `amount` × `count` in minor units, exactly: (10, 250) → 2500. */
export function multiplyMinor(amount, count) {
  return toBigInt(amount) * toBigInt(count);
}

/** A price for people: (1050, "usd") → "$10.50" (in the browser's language). */
export function formatMoney(minor, currency, locale = undefined) {
  const major = minorToMajor(minor, currency);
  const decimals = major.includes(".") ? major.split(".")[1].length : 0;
  try {
    // Intl formats a decimal string exactly (it does not go through a float).
    return new Intl.NumberFormat(locale, {
      style: "currency",
      currency: String(currency).toUpperCase(),
      minimumFractionDigits: decimals,
      maximumFractionDigits: decimals,
    }).format(major);
  } catch {
    return `${major} ${String(currency).toUpperCase()}`;
  }
}
