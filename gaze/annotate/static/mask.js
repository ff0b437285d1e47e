// Mask page: draw / erase with mouse, pen or touch (pointer events), undo / redo, clear,
// opacity, a start from a thresholded CAM or gaze map; saved as a PNG of the canvas size.
(function () {
  const editor = document.getElementById("editor");
  const width = Number(editor.dataset.width), height = Number(editor.dataset.height);
  const view = document.getElementById("view");
  const viewContext = view.getContext("2d");
  const mask = document.createElement("canvas");  // the mask itself: opaque white = in
  mask.width = width; mask.height = height;
  const context = mask.getContext("2d");
  const undo = [], redo = [];
  let start = "empty", drawing = null;
  const status = document.getElementById("status");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  function render() {
    viewContext.clearRect(0, 0, width, height);
    viewContext.globalCompositeOperation = "source-over";
    viewContext.drawImage(mask, 0, 0);
    viewContext.globalCompositeOperation = "source-in";
    viewContext.fillStyle = "#ff2020";
    viewContext.fillRect(0, 0, width, height);
    viewContext.globalCompositeOperation = "source-over";
  }
  function snapshot() { undo.push(context.getImageData(0, 0, width, height)); if (undo.length > 50) undo.shift(); redo.length = 0; }
  function restore(from, to) {
    if (!from.length) return;
    to.push(context.getImageData(0, 0, width, height));
    context.putImageData(from.pop(), 0, 0);
    render();
  }
  function point(event) {
    const box = view.getBoundingClientRect();
    return [(event.clientX - box.left) * width / box.width, (event.clientY - box.top) * height / box.height];
  }
  function stroke(from, to) {
    const tool = document.querySelector('input[name="tool"]:checked').value;
    const brush = Number(document.getElementById("brush").value) * width / view.getBoundingClientRect().width;
    context.globalCompositeOperation = tool === "erase" ? "destination-out" : "source-over";
    context.strokeStyle = context.fillStyle = "#ffffff";
    context.lineWidth = brush; context.lineCap = context.lineJoin = "round";
    context.beginPath(); context.moveTo(from[0], from[1]); context.lineTo(to[0], to[1]); context.stroke();
    context.globalCompositeOperation = "source-over";
    render();
  }
  view.addEventListener("pointerdown", (event) => {
    view.setPointerCapture(event.pointerId);
    snapshot();
    drawing = point(event);
    stroke(drawing, drawing);
    event.preventDefault();
  });
  view.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const next = point(event);
    stroke(drawing, next);
    drawing = next;
  });
  ["pointerup", "pointercancel", "pointerleave"].forEach((name) => view.addEventListener(name, () => { drawing = null; }));

  function loadInto(src, threshold) {
    const picture = new Image();
    picture.onload = () => {
      const scratch = document.createElement("canvas");
      scratch.width = width; scratch.height = height;
      const scratchContext = scratch.getContext("2d");
      scratchContext.drawImage(picture, 0, 0, width, height);
      const pixels = scratchContext.getImageData(0, 0, width, height);
      for (let i = 0; i < pixels.data.length; i += 4) {
        const inside = threshold === null ? pixels.data[i + 3] >= 128 && pixels.data[i] >= 128 : pixels.data[i] >= threshold * 255;
        pixels.data[i] = pixels.data[i + 1] = pixels.data[i + 2] = 255;
        pixels.data[i + 3] = inside ? 255 : 0;
      }
      context.putImageData(pixels, 0, 0);
      render();
    };
    picture.src = src;
  }
  document.querySelectorAll("[data-start]").forEach((button) => button.addEventListener("click", () => {
    snapshot();
    start = button.dataset.start;
    context.clearRect(0, 0, width, height);
    if (button.dataset.src) loadInto(button.dataset.src, Number(document.getElementById("threshold").value) / 100);
    render();
  }));
  document.getElementById("undo").addEventListener("click", () => restore(undo, redo));
  document.getElementById("redo").addEventListener("click", () => restore(redo, undo));
  document.getElementById("clear").addEventListener("click", () => { snapshot(); context.clearRect(0, 0, width, height); render(); });
  document.getElementById("opacity").addEventListener("input", (event) => { view.style.opacity = event.target.value / 100; });
  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "z") restore(event.shiftKey ? redo : undo, event.shiftKey ? undo : redo);
  });
  document.getElementById("save").addEventListener("click", async () => {
    status.textContent = "saving…";
    const response = await fetch(editor.dataset.save, {
      method: "POST", headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ png: mask.toDataURL("image/png"), start: start }),
    });
    const answer = await response.json().catch(() => ({ error: response.statusText }));
    status.textContent = response.ok ? "saved" : "not saved: " + answer.error;
  });
  if (editor.dataset.current) loadInto(editor.dataset.current, null);
  view.style.opacity = document.getElementById("opacity").value / 100;
  render();
})();
