"""tongban 通办: the integration bus between Chongqing's legacy departmental systems and 渝快办."""
from tongban import logmask

# Every process that loads tongban handles personal data: masking is on before the first log record is
# made, whoever logs it (our modules, zeep's DEBUG dumps of SOAP responses, Airflow's task logs).
logmask.install()
