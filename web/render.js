// Showing an answer: the <think> reasoning folded away, the \boxed{} answer highlighted, and the
// answer's boxes drawn over the images with their labels. Text is only ever set as textContent.

const $ = (id) => document.getElementById(id);

/** QoQ-Med's NEAREST downscale (W*H <= 524,288, then >= 65,536; crate/imaging range.rs): boxes
 *  come in the pixel coordinates of that resized image. */
export function qoqSize(w, h) {
  const step = (w0, h0, target) => {
    const f = Math.sqrt(target / (w0 * h0));
    return [Math.trunc(w0 * f), Math.trunc(h0 * f)]; // Python int(), as range.rs
  };
  if (w * h > 524288) [w, h] = step(w, h, 524288);
  if (w * h < 65536 && w * h > 0) [w, h] = step(w, h, 65536);
  return [w, h];
}

/** Empties the answer area; with `manual` (predict, then reveal) the streamed text stays hidden. */
export function clearAnswer(manual = false) {
  $('stream').textContent = '';
  $('stream').hidden = manual;
  $('think-text').textContent = '';
  $('think').hidden = true;
  $('think').open = false;
  $('answer').textContent = '';
  $('answer-block').hidden = true;
  $('figures').replaceChildren();
  $('reveal').hidden = true;
  $('stats').textContent = '';
}

/** images: [{name, url, width, height}] (object URLs of the user's images, never stored). */
export function showAnswer(answer, images, { manual }) {
  if (answer.think) {
    $('think-text').textContent = answer.think;
    $('think').hidden = false;
  }
  $('answer').textContent = answer.answer ?? '(no \\boxed{} answer)';
  $('figures').replaceChildren(...images.map((img) => figure(img, answer.boxes ?? [])));
  const reveal = () => {
    $('stream').hidden = false;
    $('answer-block').hidden = false;
    $('think').hidden = !answer.think;
    $('reveal').hidden = true;
  };
  if (manual) {
    $('stream').hidden = true;
    $('think').hidden = true;
    $('answer-block').hidden = true;
    $('reveal').hidden = false;
    $('reveal').onclick = reveal;
  } else {
    reveal();
  }
}

function figure(img, boxes) {
  const wrap = document.createElement('div');
  wrap.className = 'figure';
  const el = document.createElement('img');
  el.src = img.url;
  el.alt = img.name;
  wrap.append(el);
  const [mw, mh] = qoqSize(img.width, img.height);
  for (const b of boxes) {
    const c = b?.bbox_2d;
    if (!Array.isArray(c) || c.length !== 4 || !c.every(Number.isFinite)) continue;
    const [x1, y1, x2, y2] = c;
    const box = document.createElement('div');
    box.className = 'box';
    const pct = (v, m) => `${Math.max(0, Math.min(100, (100 * v) / m))}%`;
    box.style.left = pct(Math.min(x1, x2), mw);
    box.style.top = pct(Math.min(y1, y2), mh);
    box.style.width = pct(Math.abs(x2 - x1), mw);
    box.style.height = pct(Math.abs(y2 - y1), mh);
    if (b.label != null) {
      const label = document.createElement('span');
      label.textContent = String(b.label);
      box.append(label);
    }
    wrap.append(box);
  }
  return wrap;
}
