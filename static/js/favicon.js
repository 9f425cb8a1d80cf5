// Favicons drawn as SVG data URLs: a progress ring, a check on success, a cross on failure.

function dataUrl(svg) {
  return `data:image/svg+xml,${encodeURIComponent(svg)}`;
}

export function progressIcon(fraction) {
  const f = Math.min(1, Math.max(0, fraction));
  const r = 12;
  const length = 2 * Math.PI * r;
  return dataUrl(
    `<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32" viewBox="0 0 32 32">` +
    `<circle cx="16" cy="16" r="${r}" fill="none" stroke="#c9d3df" stroke-width="6"/>` +
    `<circle cx="16" cy="16" r="${r}" fill="none" stroke="#0b5cad" stroke-width="6" ` +
    `stroke-dasharray="${(f * length).toFixed(2)} ${length.toFixed(2)}" transform="rotate(-90 16 16)"/></svg>`,
  );
}

export function readyIcon() {
  return dataUrl(
    `<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32" viewBox="0 0 32 32">` +
    `<circle cx="16" cy="16" r="15" fill="#146c2e"/>` +
    `<path d="M9 16.5l4.5 4.5L23 11" fill="none" stroke="#fff" stroke-width="3.5" stroke-linecap="round"/></svg>`,
  );
}

export function failedIcon() {
  return dataUrl(
    `<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32" viewBox="0 0 32 32">` +
    `<circle cx="16" cy="16" r="15" fill="#b3261e"/>` +
    `<path d="M10.5 10.5l11 11M21.5 10.5l-11 11" stroke="#fff" stroke-width="3.5" stroke-linecap="round"/></svg>`,
  );
}

export function setFavicon(href) {
  let link = document.getElementById("favicon");
  if (!link) {
    link = document.createElement("link");
    link.id = "favicon";
    link.rel = "icon";
    document.head.appendChild(link);
  }
  link.type = "image/svg+xml";
  link.href = href;
}
