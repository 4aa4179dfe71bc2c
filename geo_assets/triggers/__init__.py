"""What starts runs besides a person: sensors (`sensors.py`: region and model partitions from the
catalogue, input changes of the datasets; `arrivals.py`: scenes landing in the storage), schedules
(`schedules.py`) and declarative automation (`automation.py`). Nothing is imported here, so that
assets may import `automation` without importing the sensors, which import the assets' helpers.
"""
