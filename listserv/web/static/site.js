// Progressive enhancement only: every page works without this file.
document.addEventListener("DOMContentLoaded", () => {
  // The language switcher applies the choice at once; its button stays for keyboard and no-JS use.
  for (const select of document.querySelectorAll("form.language select")) {
    select.addEventListener("change", () => select.form.requestSubmit());
  }
  // A reject needs its reason: focus the reason field when "reject" is chosen.
  for (const button of document.querySelectorAll("button[data-focus]")) {
    button.addEventListener("click", (event) => {
      const field = document.getElementById(button.dataset.focus);
      if (field && !field.value.trim()) { event.preventDefault(); field.focus(); }
    });
  }
});
