"""Model layer: prompt rendering, profiles, checkpoint loading and embedding backends. No Ray imports here."""
