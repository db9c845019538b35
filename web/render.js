// Showing an answer: the <think> reasoning folded away, the \boxed{} answer highlighted, and the
// answer's boxes drawn over the images with their labels. Text is only ever set as textContent.

const $ = (id) => document.getElementById(id);

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

/** images: [{name, url, width, height}] (object URLs of the user's images, never stored), in the
 *  order the model saw them (a volume's sampled slices one by one). */
export function showAnswer(answer, images, { manual }) {
  if (answer.think) {
    $('think-text').textContent = answer.think;
    $('think').hidden = false;
  }
  $('answer').textContent = answer.answer ?? '(no \\boxed{} answer)';
  $('figures').replaceChildren(...images.map((img, i) => figure(img, i, answer.boxes ?? [])));
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

/** Image `index` with the boxes that belong to it: the engine gives each box its `image` and its
 *  corners in that image's own pixels (`bbox_original`, from the model's `bbox_2d` in the frame
 *  it saw), so the overlay is in percent of the original size. A box without usable corners is
 *  not drawn (it stays in the result JSON). */
function figure(img, index, boxes) {
  const wrap = document.createElement('div');
  wrap.className = 'figure';
  const el = document.createElement('img');
  el.src = img.url;
  el.alt = img.name;
  wrap.append(el);
  for (const b of boxes) {
    const c = b?.bbox_original;
    if (b?.image !== index || !Array.isArray(c) || c.length !== 4 || !c.every(Number.isFinite)) continue;
    const [x1, y1, x2, y2] = c;
    const box = document.createElement('div');
    box.className = 'box';
    const pct = (v, m) => `${Math.max(0, Math.min(100, (100 * v) / m))}%`;
    box.style.left = pct(Math.min(x1, x2), img.width);
    box.style.top = pct(Math.min(y1, y2), img.height);
    box.style.width = pct(Math.abs(x2 - x1), img.width);
    box.style.height = pct(Math.abs(y2 - y1), img.height);
    if (b.label != null) {
      const label = document.createElement('span');
      label.textContent = typeof b.label === 'string' ? b.label : JSON.stringify(b.label);
      box.append(label);
    }
    wrap.append(box);
  }
  return wrap;
}
