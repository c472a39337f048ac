"""Reviews: the owning agency's reviewer decides, case by case, before its most sensitive records leave."""
