// The public configuration the Django view put in the page (never a secret).
const node = document.getElementById("tollgate-config");

/** @type {{apiBase: string, publishableKey: string, stripeJsUrl: string, fakeStripe: boolean}} */
export const config = Object.freeze(JSON.parse(node ? node.textContent : "{}"));
