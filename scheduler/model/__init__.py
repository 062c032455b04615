"""Scenario and plan types, and the functions that read them."""
from .load import ScenarioError, load_scenario, parse_scenario, parse_text
from .scenario import Scenario

__all__ = ["Scenario", "ScenarioError", "load_scenario", "parse_scenario", "parse_text"]
