//! Example job: advances an n-body system by a number of leapfrog steps (the
//! floating-point determinism witness).
//!
//! Only `+`, `-`, `*`, `/` and `sqrt` are used: IEEE 754 rounds each of them
//! correctly, so every machine computes the same bits, natively or in wasm.
//! Rust never contracts `a * b + c` into a fused multiply-add on its own.
//!
//! Input: `steps: u32, dt: f64, n: u32`, then `n` bodies of seven `f64`
//! (`x, y, z, vx, vy, vz, mass`), little-endian. Output: the `n` bodies after
//! the steps, in the same format.

use compute_guest::Reader;

/// Most bodies accepted.
pub const BODIES_MAX: u32 = 4096;

/// One body of the system.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Body {
    /// Position.
    pub position: [f64; 3],
    /// Velocity.
    pub velocity: [f64; 3],
    /// Mass.
    pub mass: f64,
}

/// Encodes a simulation as the job's input.
#[must_use]
pub fn encode_input(steps: u32, dt: f64, bodies: &[Body]) -> Vec<u8> {
    let mut input = Vec::with_capacity(16 + bodies.len() * 56);
    input.extend_from_slice(&steps.to_le_bytes());
    input.extend_from_slice(&dt.to_le_bytes());
    input.extend_from_slice(&(bodies.len() as u32).to_le_bytes());
    encode_bodies(bodies, &mut input);
    input
}

fn encode_bodies(bodies: &[Body], out: &mut Vec<u8>) {
    for body in bodies {
        for value in body
            .position
            .iter()
            .chain(&body.velocity)
            .chain([&body.mass])
        {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
}

/// A deterministic starting system of `n` bodies on a perturbed lattice,
/// for tests and benchmarks.
#[must_use]
pub fn lattice(n: u32) -> Vec<Body> {
    (0..n)
        .map(|i| {
            let f = f64::from(i);
            Body {
                position: [
                    f % 7.0 + 0.1 * f,
                    (f * 3.0) % 11.0,
                    (f * 5.0) % 13.0 - 0.5 * f,
                ],
                velocity: [0.01 * (f % 3.0), -0.02 * (f % 5.0), 0.005 * f],
                mass: 1.0 + (f % 4.0),
            }
        })
        .collect()
}

/// The job: decodes the system, steps it and returns the bodies.
#[must_use]
pub fn job(input: &[u8]) -> Vec<u8> {
    let mut reader = Reader::new(input);
    let (Some(steps), Some(dt), Some(n)) = (reader.u32(), reader.f64(), reader.u32()) else {
        panic!("input must start with steps: u32, dt: f64, n: u32");
    };
    assert!(n <= BODIES_MAX, "n above BODIES_MAX");
    let mut bodies: Vec<Body> = (0..n)
        .map(|_| {
            let mut values = [0.0; 7];
            for value in &mut values {
                *value = reader.f64().expect("input holds fewer than n bodies");
            }
            Body {
                position: [values[0], values[1], values[2]],
                velocity: [values[3], values[4], values[5]],
                mass: values[6],
            }
        })
        .collect();
    simulate(&mut bodies, steps, dt);
    let mut out = Vec::with_capacity(bodies.len() * 56);
    encode_bodies(&bodies, &mut out);
    out
}

/// Advances the system by `steps` steps of `dt` (kick then drift).
pub fn simulate(bodies: &mut [Body], steps: u32, dt: f64) {
    // Softening keeps two bodies that meet from producing an infinity.
    const SOFTENING: f64 = 1e-3;
    for _ in 0..steps {
        for i in 0..bodies.len() {
            let mut acceleration = [0.0f64; 3];
            for j in 0..bodies.len() {
                if i == j {
                    continue;
                }
                let d = [
                    bodies[j].position[0] - bodies[i].position[0],
                    bodies[j].position[1] - bodies[i].position[1],
                    bodies[j].position[2] - bodies[i].position[2],
                ];
                let distance_sq = d[0] * d[0] + d[1] * d[1] + d[2] * d[2] + SOFTENING;
                // `sqrt` is correctly rounded: `f64.sqrt` in wasm, `sqrtsd` natively.
                let distance = distance_sq.sqrt();
                let scale = bodies[j].mass / (distance_sq * distance);
                for axis in 0..3 {
                    acceleration[axis] += d[axis] * scale;
                }
            }
            for (velocity, a) in bodies[i].velocity.iter_mut().zip(acceleration) {
                *velocity += a * dt;
            }
        }
        for body in bodies.iter_mut() {
            for axis in 0..3 {
                body.position[axis] += body.velocity[axis] * dt;
            }
        }
    }
}

compute_guest::job!(job);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_bodies_attract_each_other() {
        let mut bodies = [
            Body {
                position: [0.0, 0.0, 0.0],
                velocity: [0.0; 3],
                mass: 1.0,
            },
            Body {
                position: [1.0, 0.0, 0.0],
                velocity: [0.0; 3],
                mass: 1.0,
            },
        ];
        simulate(&mut bodies, 1, 0.01);
        assert!(bodies[0].velocity[0] > 0.0);
        assert!(bodies[1].velocity[0] < 0.0);
    }

    #[test]
    fn job_returns_56_bytes_per_body() {
        let input = encode_input(2, 0.01, &lattice(5));
        assert_eq!(job(&input).len(), 5 * 56);
    }
}
