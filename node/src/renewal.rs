//! How often a node looks at its certificates (kiln-renew.timer runs the
//! agent's `renew`), and the shortest renewal window that cadence allows.
//! The builder's timer and its validation both read these.

/// Looks per renewal window: a leaf is renewed well before it expires even
/// when a run fails.
pub const LOOKS_PER_WINDOW: u64 = 4;
/// The timer's shortest and longest period, in seconds.
pub const SHORTEST_PERIOD: u64 = 30;
const LONGEST_PERIOD: u64 = 3_600;

/// kiln-renew.timer's period, in seconds, for a renewal window of
/// `renew_before` seconds.
pub fn timer_period(renew_before: u64) -> u64 {
    (renew_before / LOOKS_PER_WINDOW).clamp(SHORTEST_PERIOD, LONGEST_PERIOD)
}

/// The shortest renewal window, in seconds: four looks at the shortest period.
pub const MIN_WINDOW: u64 = LOOKS_PER_WINDOW * SHORTEST_PERIOD;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortest_window_gets_its_four_looks() {
        assert_eq!(MIN_WINDOW, 120);
        assert_eq!(timer_period(MIN_WINDOW), SHORTEST_PERIOD);
        assert_eq!(MIN_WINDOW / timer_period(MIN_WINDOW), LOOKS_PER_WINDOW);
        assert_eq!(timer_period(365 * 86_400), 3_600);
    }
}
