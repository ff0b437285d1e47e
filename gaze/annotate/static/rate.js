// Rating page: submit stays disabled until every question is answered; keyboard shortcuts.
(function () {
  const form = document.getElementById("rating");
  const submit = document.getElementById("submit");
  const questions = Array.from(form.querySelectorAll(".question"));
  const answered = (q) => q.querySelector("input:checked") !== null;
  let focus = 0;

  function refresh() {
    submit.disabled = !questions.every(answered);
    questions.forEach((q, i) => q.classList.toggle("focus", i === focus));
    form.querySelectorAll(".overlay").forEach((o) => o.classList.toggle("current", o.contains(questions[focus] || null)));
  }
  function advance() {
    const next = questions.findIndex((q, i) => i > focus && !answered(q));
    const first = questions.findIndex((q) => !answered(q));
    focus = next >= 0 ? next : first >= 0 ? first : focus;
  }
  questions.forEach((q, i) => q.addEventListener("change", () => { focus = i; advance(); refresh(); }));
  questions.forEach((q, i) => q.addEventListener("click", () => { focus = i; refresh(); }));
  form.addEventListener("submit", (event) => { if (!questions.every(answered)) event.preventDefault(); });
  document.addEventListener("keydown", (event) => {
    if (event.target.tagName === "INPUT" && event.target.type !== "radio") return;
    const question = questions[focus];
    let value = null;
    if (question && question.dataset.kind === "yesno" && (event.key === "y" || event.key === "n")) value = event.key === "y" ? "yes" : "no";
    if (question && question.dataset.kind === "quality" && /^[1-5]$/.test(event.key)) value = event.key;
    if (value !== null) {
      const input = question.querySelector(`input[value="${value}"]`);
      input.checked = true;
      input.dispatchEvent(new Event("change", { bubbles: true }));
      event.preventDefault();
    } else if (event.key === "Enter" && !submit.disabled) {
      form.requestSubmit(submit);
      event.preventDefault();
    } else if (event.key === "ArrowLeft" && form.dataset.prev) {
      window.location = form.dataset.prev;
    } else if (event.key === "ArrowRight" && form.dataset.next) {
      window.location = form.dataset.next;
    }
  });
  advance();
  refresh();
})();
