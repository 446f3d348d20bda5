// Log in: trade a username and password for a bearer token (POST /auth/token/).
import { api, session } from "../api.js";
import { errorNotice, h, notice, show } from "../ui.js";

export async function render(root, { navigate, query }) {
  const message = h("div", { class: "messages" });
  const username = h("input", { name: "username", autocomplete: "username", required: true });
  const password = h("input", {
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const submit = h("button", { type: "submit" }, "Log in");
  const form = h(
    "form",
    { class: "panel narrow", id: "login-form" },
    h("h1", {}, "Log in"),
    h("label", {}, "Username", username),
    h("label", {}, "Password", password),
    submit,
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    show(message, notice("loading", "Logging in…"));
    try {
      const answer = await api.post(
        "/auth/token/",
        { username: username.value, password: password.value, name: "web client" },
        { auth: false },
      );
      session.save(answer.token, username.value);
      navigate(query.get("next") || "/");
    } catch (err) {
      show(message, errorNotice(err));
      submit.disabled = false;
    }
  });
  show(root, form);
  username.focus();
}
