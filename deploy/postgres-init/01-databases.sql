-- Run once by the postgres image on an empty data directory (docker-entrypoint-initdb.d).
-- One database per component; the services never share one.
CREATE DATABASE participant;
CREATE DATABASE consent;
CREATE DATABASE messaging;
CREATE DATABASE gateway;
