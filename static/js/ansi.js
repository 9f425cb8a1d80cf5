// ANSI escape sequences -> HTML, for build logs.
//
// Text is HTML-escaped first-class: every character of the input reaches the page as text,
// never as markup. SGR sequences (colours, bold, italic, underline, inverse; 16, 256 and
// 24-bit colours) become <span>s; every other escape sequence is dropped. A carriage return
// inside a line keeps only what was written after it, as a terminal would show it.
// The renderer keeps its state between calls, so a colour may span several log events.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (ch) => ESCAPES[ch]);
}

// CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), and two-character escapes.
const SEQUENCE = /\x1b\[([0-9;:?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?/g;
// Control characters other than tab and newline (ESC is handled above, CR per line).
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]/g;
const CUBE = [0, 95, 135, 175, 215, 255];

function palette256(n) {
  if (n < 16) return { index: n };
  if (n < 232) {
    const v = n - 16;
    return { rgb: [CUBE[Math.floor(v / 36)], CUBE[Math.floor(v / 6) % 6], CUBE[v % 6]] };
  }
  const grey = 8 + 10 * (n - 232);
  return { rgb: [grey, grey, grey] };
}

function byte(value) {
  const n = Number.parseInt(value, 10);
  return Number.isFinite(n) ? Math.min(255, Math.max(0, n)) : 0;
}

export class AnsiRenderer {
  constructor() {
    this.reset();
  }

  reset() {
    this.fg = null; // {index} or {rgb}
    this.bg = null;
    this.bold = false;
    this.dim = false;
    this.italic = false;
    this.underline = false;
    this.strike = false;
    this.inverse = false;
  }

  // Apply one SGR parameter list ("1;31", "38;5;208", "" = reset).
  sgr(params) {
    const codes = params === "" ? [0] : params.split(/[;:]/).map((p) => (p === "" ? 0 : Number.parseInt(p, 10)));
    for (let i = 0; i < codes.length; i++) {
      const code = codes[i];
      if (code === 0) this.reset();
      else if (code === 1) this.bold = true;
      else if (code === 2) this.dim = true;
      else if (code === 3) this.italic = true;
      else if (code === 4) this.underline = true;
      else if (code === 7) this.inverse = true;
      else if (code === 9) this.strike = true;
      else if (code === 22) { this.bold = false; this.dim = false; }
      else if (code === 23) this.italic = false;
      else if (code === 24) this.underline = false;
      else if (code === 27) this.inverse = false;
      else if (code === 29) this.strike = false;
      else if (code >= 30 && code <= 37) this.fg = { index: code - 30 };
      else if (code === 39) this.fg = null;
      else if (code >= 40 && code <= 47) this.bg = { index: code - 40 };
      else if (code === 49) this.bg = null;
      else if (code >= 90 && code <= 97) this.fg = { index: code - 90 + 8 };
      else if (code >= 100 && code <= 107) this.bg = { index: code - 100 + 8 };
      else if (code === 38 || code === 48) {
        let colour = null;
        if (codes[i + 1] === 5 && i + 2 < codes.length) {
          colour = palette256(Math.min(255, Math.max(0, codes[i + 2] | 0)));
          i += 2;
        } else if (codes[i + 1] === 2 && i + 4 < codes.length) {
          colour = { rgb: [byte(codes[i + 2]), byte(codes[i + 3]), byte(codes[i + 4])] };
          i += 4;
        } else {
          break; // malformed: ignore the rest of this sequence
        }
        if (code === 38) this.fg = colour; else this.bg = colour;
      }
    }
  }

  // The opening tag for the current state, or "" when the text is plain.
  openTag() {
    const classes = [];
    const styles = [];
    let fg = this.fg;
    let bg = this.bg;
    if (this.inverse) {
      fg = this.bg || { index: 0 };
      bg = this.fg || { index: 7 };
    }
    if (fg) {
      if (fg.rgb) styles.push(`color:rgb(${fg.rgb.join(",")})`); else classes.push(`ansi-fg-${fg.index}`);
    }
    if (bg) {
      if (bg.rgb) styles.push(`background-color:rgb(${bg.rgb.join(",")})`); else classes.push(`ansi-bg-${bg.index}`);
    }
    if (this.bold) classes.push("ansi-bold");
    if (this.dim) classes.push("ansi-dim");
    if (this.italic) classes.push("ansi-italic");
    if (this.underline) classes.push("ansi-underline");
    if (this.strike) classes.push("ansi-strike");
    if (!classes.length && !styles.length) return "";
    return `<span${classes.length ? ` class="${classes.join(" ")}"` : ""}${styles.length ? ` style="${styles.join(";")}"` : ""}>`;
  }

  // Render one piece of text with no newline and no carriage return.
  segment(text) {
    let html = "";
    let last = 0;
    const emit = (plain) => {
      if (!plain) return;
      const open = this.openTag();
      const escaped = escapeHtml(plain.replace(CONTROL, ""));
      if (escaped) html += open ? `${open}${escaped}</span>` : escaped;
    };
    SEQUENCE.lastIndex = 0;
    let match;
    while ((match = SEQUENCE.exec(text)) !== null) {
      emit(text.slice(last, match.index));
      if (match[2] === "m") this.sgr(match[1]);
      last = SEQUENCE.lastIndex;
      if (match[0] === "") SEQUENCE.lastIndex++; // never loop on an empty match
    }
    emit(text.slice(last));
    return html;
  }

  // Render text (any number of lines); returns HTML safe to insert.
  render(text) {
    const lines = String(text).split("\n");
    return lines.map((line) => {
      const parts = line.replace(/\r+$/, "").split("\r");
      let shown = "";
      for (const part of parts) {
        const html = this.segment(part); // every part updates the colour state
        if (html || part === parts[parts.length - 1]) shown = html || shown;
      }
      return shown;
    }).join("\n");
  }
}

export function ansiToHtml(text) {
  return new AnsiRenderer().render(text);
}
