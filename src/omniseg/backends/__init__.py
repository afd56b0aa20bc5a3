"""Sources of Regions/proposals other than the native model."""
