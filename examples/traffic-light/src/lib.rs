//! The traffic-light example (filled by the traffic-light issue).
