-- extra200tomqtt: MariaDB / MySQL schema version 1.
--
-- The program creates these tables itself when they are missing (and adds
-- the columns of newer versions); this file is for creating them by hand:
--   mariadb -u root -p -e "CREATE DATABASE extra200tomqtt; CREATE USER 'extra200'@'%' IDENTIFIED BY '...';
--     GRANT ALL ON extra200tomqtt.* TO 'extra200'@'%';"
--   mariadb -u extra200 -p extra200tomqtt < schema/extra200tomqtt.sql
-- Times are UTC.  Generated from extra200/database/schema.py (schema_sql); edit that, not this.

CREATE TABLE IF NOT EXISTS `battery_readings` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `ts` DATETIME(6) NOT NULL COMMENT 'poll time, UTC',
  `address` SMALLINT UNSIGNED NOT NULL COMMENT 'unit number (1 = master)',
  `present` TINYINT(1) NULL COMMENT '0 when the pwr table shows the slot Absent',
  `voltage` DOUBLE NULL COMMENT 'V',
  `current` DOUBLE NULL COMMENT 'A, + charging',
  `power` DOUBLE NULL COMMENT 'W, + charging',
  `soc` DOUBLE NULL COMMENT '%',
  `temperature` DOUBLE NULL COMMENT 'BMS temperature, C',
  `cell_temp_low` DOUBLE NULL COMMENT 'C',
  `cell_temp_high` DOUBLE NULL COMMENT 'C',
  `cell_temp_low_cell` SMALLINT UNSIGNED NULL COMMENT 'cell number, 1-based',
  `cell_temp_high_cell` SMALLINT UNSIGNED NULL COMMENT 'cell number, 1-based',
  `cell_voltage_low` DOUBLE NULL COMMENT 'V',
  `cell_voltage_high` DOUBLE NULL COMMENT 'V',
  `cell_voltage_low_cell` SMALLINT UNSIGNED NULL COMMENT 'cell number, 1-based',
  `cell_voltage_high_cell` SMALLINT UNSIGNED NULL COMMENT 'cell number, 1-based',
  `cell_voltage_delta` DOUBLE NULL COMMENT 'V, highest minus lowest cell',
  `base_state` VARCHAR(32) NULL COMMENT 'Base.St: Charge / Dischg / Idle / ...',
  `voltage_state` VARCHAR(32) NULL COMMENT 'Volt.St',
  `current_state` VARCHAR(32) NULL COMMENT 'Curr.St',
  `temperature_state` VARCHAR(32) NULL COMMENT 'Temp.St',
  `unit_time` VARCHAR(32) NULL COMMENT 'the unit''s clock, as printed',
  `battery_voltage_state` VARCHAR(32) NULL COMMENT 'B.V.St',
  `battery_temperature_state` VARCHAR(32) NULL COMMENT 'B.T.St',
  `mos_temperature` DOUBLE NULL COMMENT 'C',
  `mos_temperature_state` VARCHAR(32) NULL COMMENT 'M.T.St',
  `system_alarm_state` VARCHAR(32) NULL COMMENT 'SysAlarm.St',
  `barcode` VARCHAR(64) NULL COMMENT 'module serial number',
  `device_type` VARCHAR(64) NULL COMMENT 'Pytes DevType',
  `capacity` DOUBLE NULL COMMENT 'installed Ah',
  `remaining` DOUBLE NULL COMMENT 'Ah, SoC x capacity',
  `total_capacity` DOUBLE NULL COMMENT 'Ah, pwr N Total Coulomb',
  `remaining_capacity` DOUBLE NULL COMMENT 'Ah, pwr N Real Coulomb',
  `max_voltage` DOUBLE NULL COMMENT 'V, pwr N Max Voltage',
  `charge_times` BIGINT NULL COMMENT 'pwr N Charge Times (a transition counter, not cycles)',
  `coulomb_state` VARCHAR(32) NULL COMMENT 'Coul. Status',
  `soh_state` VARCHAR(32) NULL COMMENT 'Soh. Status',
  `heater_state` VARCHAR(32) NULL COMMENT 'Heater Status',
  `protect_enabled` VARCHAR(255) NULL COMMENT 'Protect ENA',
  `bat_events` BIGINT NULL COMMENT 'Bat Events bits',
  `power_events` BIGINT NULL COMMENT 'Power Events bits',
  `system_fault` BIGINT NULL COMMENT 'System Fault bits',
  `balancing` TINYINT(1) NULL COMMENT 'any cell balancing',
  `cycle_count` BIGINT NULL COMMENT 'stat CYCLE Times',
  `soh` DOUBLE NULL COMMENT '%',
  PRIMARY KEY (`id`),
  UNIQUE KEY `poll_key` (`ts`, `address`),
  KEY `unit_time` (`address`, `ts`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='one row per unit per poll';

CREATE TABLE IF NOT EXISTS `cell_readings` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `ts` DATETIME(6) NOT NULL COMMENT 'poll time, UTC',
  `address` SMALLINT UNSIGNED NOT NULL COMMENT 'unit number (1 = master)',
  `cell` SMALLINT UNSIGNED NOT NULL COMMENT 'cell number, 1-based (console index + 1)',
  `voltage` DOUBLE NULL COMMENT 'V',
  `temperature` DOUBLE NULL COMMENT 'C',
  `base_state` VARCHAR(32) NULL COMMENT 'Base State',
  `voltage_state` VARCHAR(32) NULL COMMENT 'Volt. State',
  `current_state` VARCHAR(32) NULL COMMENT 'Curr. State',
  `temperature_state` VARCHAR(32) NULL COMMENT 'Temp. State',
  `current` DOUBLE NULL COMMENT 'A, + charging',
  `soc` DOUBLE NULL COMMENT '%',
  `coulomb` DOUBLE NULL COMMENT 'Ah',
  `balancing` TINYINT(1) NULL COMMENT 'BAL',
  `extra` TEXT NULL COMMENT 'other columns as printed, JSON',
  PRIMARY KEY (`id`),
  UNIQUE KEY `poll_key` (`ts`, `address`, `cell`),
  KEY `unit_time` (`address`, `ts`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='one row per cell whenever a fresh bat N was read; columns by cells.level';

CREATE TABLE IF NOT EXISTS `battery_events` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `ts` DATETIME(6) NOT NULL COMMENT 'poll time, UTC',
  `address` SMALLINT UNSIGNED NOT NULL COMMENT 'unit number (1 = master)',
  `kind` VARCHAR(16) NOT NULL COMMENT 'bat_events / power_events / system_fault / status / cell',
  `code` VARCHAR(64) NOT NULL COMMENT 'bit (0x2000) or status word (Volt.St=High)',
  `cell` SMALLINT UNSIGNED NOT NULL DEFAULT 0 COMMENT 'cell number for cell events, else 0',
  `name` VARCHAR(128) NULL COMMENT 'readable name',
  `level` VARCHAR(16) NULL COMMENT 'info / warning',
  `transition` VARCHAR(16) NOT NULL COMMENT 'appeared / cleared',
  PRIMARY KEY (`id`),
  UNIQUE KEY `poll_key` (`ts`, `address`, `kind`, `code`, `cell`, `transition`),
  KEY `unit_time` (`address`, `ts`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='an event appearing or clearing';

CREATE TABLE IF NOT EXISTS `schema_info` (
  `name` VARCHAR(64) NOT NULL,
  `value` VARCHAR(255) NULL,
  PRIMARY KEY (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='written by extra200tomqtt';

INSERT INTO `schema_info` (`name`, `value`) VALUES ('schema_version', '1')
  ON DUPLICATE KEY UPDATE `value` = `value`;
