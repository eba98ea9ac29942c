"""Stand-in of gpiozero.pins (gpiozero 2.0.1): only the lgpio factory is modelled."""
