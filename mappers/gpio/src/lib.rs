//! GPIO mapper (filled by the traffic-light issue).
