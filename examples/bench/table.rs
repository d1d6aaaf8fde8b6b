//! The one table the suite prints: each figure beside its floor from the same run, their ratio, the target and
//! whether it is met; as fixed-width text, or as Markdown for BENCHMARKS.md.

pub struct Row {
    pub figure: String,
    pub value: String,
    pub floor: String,
    pub ratio: String,
    pub target: String,
    /// `None` where there is no target to meet or the figure was not measured.
    pub met: Option<bool>,
}

impl Row {
    pub fn new(figure: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            figure: figure.into(),
            value: value.into(),
            floor: String::new(),
            ratio: String::new(),
            target: String::new(),
            met: None,
        }
    }

    pub fn floor(mut self, floor: impl Into<String>, ratio: impl Into<String>) -> Self {
        self.floor = floor.into();
        self.ratio = ratio.into();
        self
    }

    pub fn target(mut self, target: impl Into<String>, met: bool) -> Self {
        self.target = target.into();
        self.met = Some(met);
        self
    }

    fn cells(&self) -> [&str; 6] {
        let met = match self.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        [&self.figure, &self.value, &self.floor, &self.ratio, &self.target, met]
    }
}

const HEADER: [&str; 6] = ["figure", "value", "floor (same run)", "ratio", "target", "met?"];

#[derive(Default)]
pub struct Table {
    pub rows: Vec<Row>,
    pub footer: Vec<String>,
}

impl Table {
    pub fn text(&self) -> String {
        let mut widths = HEADER.map(|cell| cell.chars().count());
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row.cells()) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 6]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            format!("{}\n", padded.join(" | ").trim_end())
        };
        let rule = format!(
            "{}\n",
            "-".repeat(widths.iter().sum::<usize>() + 3 * (widths.len() - 1))
        );
        let mut out = line(HEADER) + &rule;
        for row in &self.rows {
            out += &line(row.cells());
        }
        out += &rule;
        for note in &self.footer {
            out += &format!("{note}\n");
        }
        out
    }

    pub fn markdown(&self) -> String {
        let line = |cells: [&str; 6]| format!("| {} |\n", cells.map(|cell| cell.replace('|', "\\|")).join(" | "));
        let mut out = line(HEADER) + "|---|---:|---:|---:|---|---|\n";
        for row in &self.rows {
            out += &line(row.cells());
        }
        out += "\n";
        for note in &self.footer {
            out += &format!("{note}  \n");
        }
        out
    }
}
