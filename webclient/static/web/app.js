// The web client's entry point: a hash router over the pages, and the login guard.
//
// The rule: a page works only while it is the current one. Each render draws into a
// view of its own, which leaves the document when the reader navigates away, so a
// late answer paints nothing anyone sees; and it gets an `isActive()` that turns
// false at the same moment, so a poll stops and a late answer starts nothing.
import { onUnauthorized, session } from "./api.js";
import { render as book } from "./pages/book.js";
import { render as bookings } from "./pages/bookings.js";
import { render as buy } from "./pages/buy.js";
import { render as cards } from "./pages/cards.js";
import { render as dashboard } from "./pages/dashboard.js";
import { render as login } from "./pages/login.js";
import { renderDetail as orderDetail, renderList as orders } from "./pages/orders.js";
import { render as subscription } from "./pages/subscription.js";

const ROUTES = [
  [/^\/$/, dashboard, "Dashboard"],
  [/^\/login$/, login, "Log in"],
  [/^\/buy$/, buy, "Buy credits"],
  [/^\/book$/, book, "Book"],
  [/^\/cards$/, cards, "Cards"],
  [/^\/orders$/, orders, "Orders"],
  [/^\/orders\/(\d+)$/, orderDetail, "Order"],
  [/^\/bookings$/, bookings, "Bookings"],
  [/^\/subscription$/, subscription, "Subscription"],
];

const root = document.getElementById("app");
const nav = document.getElementById("nav");
let generation = 0;

function currentLocation() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, search = ""] = raw.split("?");
  return { path: path || "/", query: new URLSearchParams(search) };
}

export function navigate(target) {
  if (location.hash === `#${target}`) route();
  else location.hash = target;
}

function updateNav(path) {
  const loggedIn = Boolean(session.token());
  nav.hidden = !loggedIn;
  document.getElementById("who").textContent = loggedIn ? session.username() : "";
  for (const link of nav.querySelectorAll("a")) {
    const href = link.getAttribute("href").slice(1);
    const current = href === path || (href !== "/" && path.startsWith(href + "/"));
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function route() {
  const mine = ++generation;
  const isActive = () => mine === generation;
  const { path, query } = currentLocation();
  if (!session.token() && path !== "/login") {
    navigate(`/login?next=${encodeURIComponent(path + (query.toString() ? `?${query}` : ""))}`);
    return;
  }
  updateNav(path);
  const found = ROUTES.map(([pattern, page, title]) => [path.match(pattern), page, title]).find(([m]) => m);
  if (!found) {
    root.replaceChildren(
      Object.assign(document.createElement("p"), { textContent: "There is no such page." }),
    );
    return;
  }
  const [match, page, title] = found;
  document.title = `${title} · Tollgate`;
  const view = document.createElement("div");
  root.replaceChildren(view);
  const context = { isActive, navigate, query, params: match.slice(1), rerender: () => page(view, context) };
  try {
    await page(view, context);
  } catch (err) {
    console.error(err);
    if (isActive()) view.textContent = `This page failed: ${err.message}`;
  }
}

onUnauthorized(() => {
  session.clear();
  const { path } = currentLocation();
  navigate(`/login?next=${encodeURIComponent(path)}`);
});

document.getElementById("logout").addEventListener("click", () => {
  session.clear();
  navigate("/login");
});

window.addEventListener("hashchange", route);
route();
