//! A small page layout over pdf-writer: A4 pages, the standard Helvetica (no font file to
//! embed), headings, wrapped paragraphs, tables that repeat their header on a new page, and a
//! bar chart. Text is WinAnsi: characters outside it (e.g. CJK agent names) print as `?` (the
//! CSV keeps them as they are).

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

pub const PAGE_W: f32 = 595.0;
pub const PAGE_H: f32 = 842.0;
pub const MARGIN: f32 = 48.0;
const BOTTOM: f32 = 56.0;
const ROW_H: f32 = 13.0;

/// Helvetica advance widths (1/1000 em) of the printable ASCII characters (the Adobe core-font
/// metrics); other characters count as 556.
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556, 556, 556, 556, 556,
    556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833,
    722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556,
    556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334,
    260, 334, 584,
];

/// Width of `s` in points at `size` (bold counted ~5 % wider, enough for fitting cells).
pub fn width(s: &str, size: f32, bold: bool) -> f32 {
    let units: u32 = s
        .chars()
        .map(|c| match c as u32 {
            32..=126 => u32::from(HELVETICA[(c as u32 - 32) as usize]),
            _ => 556,
        })
        .sum();
    units as f32 * size / 1000.0 * if bold { 1.05 } else { 1.0 }
}

/// WinAnsi bytes of `s` (Latin-1 range as is, anything else `?`).
fn win_ansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c as u32 {
            32..=126 | 160..=255 => c as u32 as u8,
            _ => b'?',
        })
        .collect()
}

/// `s` cut (with "...") to fit `w` points.
pub fn fit(s: &str, size: f32, w: f32) -> String {
    if width(s, size, false) <= w {
        return s.to_string();
    }
    let mut out = String::new();
    for c in s.chars() {
        if width(&format!("{out}{c}..."), size, false) > w {
            break;
        }
        out.push(c);
    }
    out + "..."
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table column: header, width (points), alignment.
pub struct Col(pub &'static str, pub f32, pub Align);

pub struct Doc {
    pages: Vec<Content>,
    cur: Content,
    pub y: f32,
    footer: String,
}

impl Doc {
    pub fn new(footer: String) -> Doc {
        Doc { pages: Vec::new(), cur: Content::new(), y: PAGE_H - MARGIN, footer }
    }

    pub fn new_page(&mut self) {
        let done = std::mem::replace(&mut self.cur, Content::new());
        self.pages.push(done);
        self.y = PAGE_H - MARGIN;
    }

    /// Start a new page unless `h` points fit.
    pub fn ensure(&mut self, h: f32) {
        if self.y - h < BOTTOM {
            self.new_page();
        }
    }

    pub fn text(&mut self, x: f32, y: f32, size: f32, bold: bool, s: &str) {
        let font = if bold { Name(b"F2") } else { Name(b"F1") };
        let bytes = win_ansi(s);
        self.cur.begin_text();
        self.cur.set_font(font, size);
        self.cur.next_line(x, y);
        self.cur.show(Str(&bytes));
        self.cur.end_text();
    }

    fn fill(&mut self, rgb: (f32, f32, f32), x: f32, y: f32, w: f32, h: f32) {
        self.cur.set_fill_rgb(rgb.0, rgb.1, rgb.2);
        self.cur.rect(x, y, w, h);
        self.cur.fill_nonzero();
        self.cur.set_fill_rgb(0.0, 0.0, 0.0);
    }

    pub fn title(&mut self, s: &str) {
        self.text(MARGIN, self.y - 18.0, 18.0, true, s);
        self.y -= 28.0;
    }

    pub fn heading(&mut self, s: &str) {
        self.ensure(60.0);
        self.y -= 10.0;
        self.text(MARGIN, self.y - 12.0, 12.0, true, s);
        self.y -= 18.0;
    }

    /// A paragraph, wrapped to the page width.
    pub fn para(&mut self, s: &str) {
        let size = 9.5;
        let max = PAGE_W - 2.0 * MARGIN;
        let mut line = String::new();
        let mut lines = Vec::new();
        for word in s.split_whitespace() {
            let next = if line.is_empty() { word.to_string() } else { format!("{line} {word}") };
            if width(&next, size, false) > max && !line.is_empty() {
                lines.push(std::mem::replace(&mut line, word.to_string()));
            } else {
                line = next;
            }
        }
        if !line.is_empty() {
            lines.push(line);
        }
        for l in lines {
            self.ensure(ROW_H);
            self.text(MARGIN, self.y - 10.0, size, false, &l);
            self.y -= ROW_H;
        }
        self.y -= 4.0;
    }

    fn header_row(&mut self, cols: &[Col]) {
        let total: f32 = cols.iter().map(|c| c.1).sum();
        self.fill((0.9, 0.92, 0.95), MARGIN, self.y - ROW_H - 1.0, total, ROW_H + 1.0);
        self.row(cols, &cols.iter().map(|c| c.0.to_string()).collect::<Vec<_>>(), true);
    }

    fn row(&mut self, cols: &[Col], cells: &[String], bold: bool) {
        let size = 8.5;
        let mut x = MARGIN;
        for (c, s) in cols.iter().zip(cells) {
            let s = fit(s, size, c.1 - 6.0);
            let tx = match c.2 {
                Align::Left => x + 3.0,
                Align::Right => x + c.1 - 3.0 - width(&s, size, bold),
            };
            self.text(tx, self.y - 10.0, size, bold, &s);
            x += c.1;
        }
        self.y -= ROW_H;
    }

    /// A table; its header is repeated on each new page. An empty table says so.
    pub fn table(&mut self, cols: &[Col], rows: &[Vec<String>]) {
        self.ensure(ROW_H * 3.0);
        self.header_row(cols);
        if rows.is_empty() {
            self.text(MARGIN + 3.0, self.y - 10.0, 8.5, false, "(none in this period)");
            self.y -= ROW_H;
        }
        for (i, r) in rows.iter().enumerate() {
            if self.y - ROW_H < BOTTOM {
                self.new_page();
                self.header_row(cols);
            }
            if i % 2 == 1 {
                let total: f32 = cols.iter().map(|c| c.1).sum();
                self.fill((0.97, 0.97, 0.98), MARGIN, self.y - ROW_H, total, ROW_H);
            }
            self.row(cols, r, false);
        }
        self.y -= 6.0;
    }

    /// A bar chart of `values` (labels under some bars), `h` points high, the largest value
    /// written at the top.
    pub fn bars(&mut self, labels: &[String], values: &[f64], top_label: &str) {
        let h = 120.0;
        self.ensure(h + 30.0);
        let w = PAGE_W - 2.0 * MARGIN;
        let base = self.y - h - 4.0;
        let max = values.iter().copied().fold(0.0, f64::max);
        self.text(MARGIN, self.y - 8.0, 8.0, false, top_label);
        self.cur.set_stroke_rgb(0.6, 0.6, 0.6);
        self.cur.move_to(MARGIN, base);
        self.cur.line_to(MARGIN + w, base);
        self.cur.stroke();
        let n = values.len().max(1) as f32;
        let slot = w / n;
        let every = ((n * 42.0 / w).ceil() as usize).max(1);
        for (i, v) in values.iter().enumerate() {
            let bh = if max > 0.0 { (*v / max) as f32 * (h - 14.0) } else { 0.0 };
            let x = MARGIN + i as f32 * slot;
            if bh > 0.0 {
                self.fill((0.23, 0.45, 0.78), x + slot * 0.15, base, slot * 0.7, bh);
            }
            if i % every == 0 {
                if let Some(l) = labels.get(i) {
                    self.text(x + 1.0, base - 10.0, 7.0, false, l);
                }
            }
        }
        self.y = base - 20.0;
    }

    /// The finished PDF: a footer with page numbers on every page.
    pub fn finish(mut self, title: &str) -> Vec<u8> {
        self.new_page();
        let n = self.pages.len();
        let footer = self.footer.clone();
        let mut pdf = Pdf::new();
        let catalog = Ref::new(1);
        let tree = Ref::new(2);
        let (font, bold, info) = (Ref::new(3), Ref::new(4), Ref::new(5));
        let page_ids: Vec<Ref> = (0..n).map(|i| Ref::new(10 + 2 * i as i32)).collect();
        pdf.catalog(catalog).pages(tree);
        pdf.pages(tree).kids(page_ids.iter().copied()).count(n as i32);
        pdf.type1_font(font).base_font(Name(b"Helvetica")).encoding_predefined(Name(b"WinAnsiEncoding"));
        pdf.type1_font(bold).base_font(Name(b"Helvetica-Bold")).encoding_predefined(Name(b"WinAnsiEncoding"));
        pdf.document_info(info).title(TextStr(title)).producer(TextStr("ClawButler"));
        for (i, mut content) in std::mem::take(&mut self.pages).into_iter().enumerate() {
            let foot = format!("{footer}  -  page {} of {n}", i + 1);
            content.begin_text();
            content.set_font(Name(b"F1"), 7.5);
            content.next_line(MARGIN, 28.0);
            content.show(Str(&win_ansi(&foot)));
            content.end_text();
            let id = page_ids[i];
            let content_id = Ref::new(id.get() + 1);
            let mut page = pdf.page(id);
            page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
            page.parent(tree);
            page.contents(content_id);
            page.resources().fonts().pair(Name(b"F1"), font).pair(Name(b"F2"), bold);
            page.finish();
            pdf.stream(content_id, &content.finish());
        }
        pdf.finish()
    }
}
