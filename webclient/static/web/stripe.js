// Stripe.js, loaded once on first need from where the server said: Stripe's own
// script with real keys, or localstripe's stand-in (the same calls) in `make run`.
import { NetworkError } from "./api.js";
import { config } from "./config.js";

let loading = null;

export function loadStripe() {
  if (loading) return loading;
  loading = new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = config.stripeJsUrl;
    script.async = true;
    script.onload = () => {
      if (typeof window.Stripe === "function") resolve(window.Stripe(config.publishableKey));
      else reject(new Error("Stripe.js loaded but did not define Stripe."));
    };
    script.onerror = () => {
      loading = null;
      script.remove();
      reject(
        new NetworkError(null, `Could not load Stripe.js from ${config.stripeJsUrl}: check your connection.`),
      );
    };
    document.head.append(script);
  });
  return loading;
}
