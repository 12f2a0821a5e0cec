//! Example job: renders a Mandelbrot tile (a floating-point kernel using only
//! `+`, `-` and `*`, which IEEE 754 rounds the same way everywhere).
//!
//! Input: `x0: f64, y0: f64, step: f64, width: u32, height: u32,
//! iterations_max: u32`, little-endian. Output: one `u16` little-endian per
//! pixel, row by row: the iteration at which the point escaped, or
//! `iterations_max` when it did not.

use compute_guest::Reader;

/// Most pixels in one tile.
pub const PIXELS_MAX: u32 = 1 << 22;

/// One tile of the set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tile {
    /// Real part of the top-left pixel.
    pub x0: f64,
    /// Imaginary part of the top-left pixel.
    pub y0: f64,
    /// Distance between neighbouring pixels.
    pub step: f64,
    /// Pixels per row.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Iterations before a point counts as inside the set (at most `u16::MAX`).
    pub iterations_max: u32,
}

impl Tile {
    /// Encodes the tile as the job's input.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut input = Vec::with_capacity(36);
        input.extend_from_slice(&self.x0.to_le_bytes());
        input.extend_from_slice(&self.y0.to_le_bytes());
        input.extend_from_slice(&self.step.to_le_bytes());
        input.extend_from_slice(&self.width.to_le_bytes());
        input.extend_from_slice(&self.height.to_le_bytes());
        input.extend_from_slice(&self.iterations_max.to_le_bytes());
        input
    }

    fn decode(input: &[u8]) -> Option<Self> {
        let mut reader = Reader::new(input);
        Some(Self {
            x0: reader.f64()?,
            y0: reader.f64()?,
            step: reader.f64()?,
            width: reader.u32()?,
            height: reader.u32()?,
            iterations_max: reader.u32()?,
        })
    }
}

/// The job: decodes the tile and renders it.
#[must_use]
pub fn job(input: &[u8]) -> Vec<u8> {
    let Some(tile) = Tile::decode(input) else {
        panic!("input must be x0, y0, step: f64, width, height, iterations_max: u32");
    };
    render(&tile)
}

/// Renders a tile to one `u16` per pixel.
#[must_use]
pub fn render(tile: &Tile) -> Vec<u8> {
    let pixels = u64::from(tile.width) * u64::from(tile.height);
    assert!(pixels <= u64::from(PIXELS_MAX), "tile too large");
    assert!(
        tile.iterations_max <= u32::from(u16::MAX),
        "iterations_max above u16::MAX"
    );
    let mut out = Vec::with_capacity(pixels as usize * 2);
    for row in 0..tile.height {
        let ci = tile.y0 + f64::from(row) * tile.step;
        for col in 0..tile.width {
            let cr = tile.x0 + f64::from(col) * tile.step;
            let escaped = escape_iteration(cr, ci, tile.iterations_max);
            out.extend_from_slice(&(escaped as u16).to_le_bytes());
        }
    }
    out
}

fn escape_iteration(cr: f64, ci: f64, iterations_max: u32) -> u32 {
    let (mut zr, mut zi) = (0.0f64, 0.0f64);
    for iteration in 0..iterations_max {
        let (zr2, zi2) = (zr * zr, zi * zi);
        if zr2 + zi2 > 4.0 {
            return iteration;
        }
        zi = 2.0 * zr * zi + ci;
        zr = zr2 - zi2 + cr;
    }
    iterations_max
}

compute_guest::job!(job);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_is_inside_and_far_points_escape_at_once() {
        assert_eq!(escape_iteration(0.0, 0.0, 100), 100);
        assert_eq!(escape_iteration(3.0, 3.0, 100), 1);
    }

    #[test]
    fn job_renders_two_bytes_per_pixel() {
        let tile = Tile {
            x0: -2.0,
            y0: -1.0,
            step: 0.5,
            width: 6,
            height: 4,
            iterations_max: 50,
        };
        assert_eq!(job(&tile.encode()).len(), 6 * 4 * 2);
    }
}
