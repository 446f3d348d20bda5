// Reads shared by several pages.
import { api } from "./api.js";

/** The catalog entry of one purchase type (`credits`, `subscription`, `workshop`, …). */
export async function purchaseType(name) {
  const catalog = await api.get("/catalog/", { auth: false });
  return catalog.purchase_types.find((t) => t.name === name) || null;
}

/** My saved cards, the default first. */
export async function savedCards() {
  const { payment_methods: cards } = await api.get("/payments/methods/");
  return [...cards].sort((a, b) => Number(b.is_default) - Number(a.is_default) || a.id - b.id);
}
