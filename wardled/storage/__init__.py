"""Storage backends behind one interface (L{wardled.storage.interfaces.IStorage})."""
