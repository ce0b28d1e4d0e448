//! Hardware-in-the-loop scenarios (filled by the traffic-light issue).
